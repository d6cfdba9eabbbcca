"""The typed Records are the wire format, byte for byte, and the bank reads them as such.

Commands go Record → wire bytes → ``parse_command`` and come out with the same fields
and the same bytes as the domain command they stand for. Events come from the pure
``decide`` (every type the bank emits) and are read into their Records with every field
kept. The last tests put Records, encoded as a Faust user's typed topic encodes them,
into the real command agent with Faust's ``test_context`` harness.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import faust
import orjson
import pytest
from faust.exceptions import ValueDecodeError
from faust.types import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from banking_app import records
from banking_app.domain import Account, Command, decide, evolve, parse_command
from banking_app.domain import commands as cmd
from banking_app.domain import events as ev
from banking_app.event_processor.agent import Handled
from banking_app.runtime import codec
from banking_app.runtime.topics import commands_topic, events_topic
from support.agent_harness import last_outcomes, running_harness, send

# A user's own app, never started: its typed topics encode and decode as on the wire.
user_app = faust.App("records-test-client", broker="kafka://localhost:1", web_enabled=False)
typed_commands, typed_events = records.typed_topics(user_app)


def wire(record: records.CommandRecord) -> tuple[bytes, bytes]:
    """The key and value a Faust user's ``commands.send(key=..., value=record)`` produces."""
    key, _ = typed_commands.prepare_key(record.account_id, None)
    value, _ = typed_commands.prepare_value(record, None)
    return key, value


# ------------------------------------------------------------------------ commands

command_ids = st.from_regex(cmd.COMMAND_ID_RE, fullmatch=True)
account_ids = st.from_regex(cmd.ACCOUNT_ID_RE, fullmatch=True)
# Any 64-bit count is well-formed; a range check is the domain's (INVALID_AMOUNT).
amounts = st.integers(-(2**63), 2**63 - 1)
common = {
    "command_id": command_ids,
    "account_id": account_ids,
    "expected_version": st.none() | st.integers(0, 2**63 - 1),
}
public_commands = st.one_of(
    st.builds(
        records.CreateAccount,
        **common,
        owner=st.text(
            st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=cmd.MAX_OWNER_LENGTH
        ).filter(str.strip),
        currency=st.from_regex(cmd.CURRENCY_RE, fullmatch=True),
        overdraft_limit=st.integers(0, cmd.MAX_AMOUNT),
    ),
    st.builds(records.Deposit, **common, amount=amounts),
    st.builds(records.Withdraw, **common, amount=amounts),
    st.builds(records.TransferMoney, **common, to_account_id=account_ids, amount=amounts),
    st.builds(records.CloseAccount, **common),
)


def test_there_is_a_record_for_every_public_command_and_every_event() -> None:
    assert set(records.COMMAND_RECORDS) == set(cmd.PUBLIC_COMMAND_TYPES)
    assert set(records.EVENT_RECORDS) == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("kind", cmd.PUBLIC_COMMAND_TYPES)
def test_a_command_record_has_its_domain_commands_fields(kind: str) -> None:
    record_fields = records.COMMAND_RECORDS[kind]._options.fields
    assert list(record_fields) == [f.name for f in fields(cmd.COMMAND_TYPES[kind])]


@pytest.mark.parametrize("kind", list(ev.EVENT_TYPES))
def test_an_event_record_has_its_domain_events_fields(kind: str) -> None:
    expected = {f.name for f in fields(ev.EVENT_TYPES[kind])} | {"schema_version"}
    if kind in {"TransferSettled", "CommandRejected"}:
        expected.discard("seq")  # never written: they change no account
    assert set(records.EVENT_RECORDS[kind]._options.fields) == expected


@settings(max_examples=300, deadline=None)
@given(public_commands)
def test_every_public_command_round_trips_through_the_wire_and_parse_command(
    record: records.CommandRecord,
) -> None:
    key, value = wire(record)
    assert key == record.account_id.encode()
    assert value == record.dumps()
    data = orjson.loads(value)
    assert "__faust" not in data
    assert next(iter(data)) == "type"

    command = parse_command(data, allow_internal=False)
    assert command.type == record.type
    assert {f.name: getattr(command, f.name) for f in fields(command)} == record.asdict()
    # Byte for byte what the bank itself writes for the same command.
    domain = cmd.COMMAND_TYPES[record.type](**record.asdict())
    assert command == domain
    assert value == codec.dumps(domain.to_dict())
    # And read back into the same Record, through the typed topic's value type too.
    assert records.command_record(data) == record
    assert records.CommandRecord.loads(value) == record


def test_optional_fields_are_left_out_when_none_as_the_domain_does() -> None:
    deposit = records.Deposit(command_id="c1", account_id="acc-1", amount=5)
    assert (
        deposit.dumps() == b'{"type":"DEPOSIT","command_id":"c1","account_id":"acc-1","amount":5}'
    )
    versioned = records.Deposit(command_id="c1", account_id="acc-1", amount=5, expected_version=3)
    assert orjson.loads(versioned.dumps())["expected_version"] == 3
    # Faust gives an optional field passed as None its default: 0 here, as in the domain.
    create = records.CreateAccount(
        command_id="c2", account_id="acc-1", owner="Zoë", currency="EUR", overdraft_limit=None
    )
    assert create.dumps() == codec.dumps(
        cmd.CreateAccount(
            command_id="c2", account_id="acc-1", owner="Zoë", currency="EUR"
        ).to_dict()
    )


def test_a_record_is_read_only_from_its_own_public_type() -> None:
    deposit = {"type": "DEPOSIT", "command_id": "c", "account_id": "a", "amount": 1}
    with pytest.raises(ValueError, match="WITHDRAW"):
        records.Deposit.from_data({**deposit, "type": "WITHDRAW"})
    leg = {**deposit, "type": "TRANSFER_CREDIT", "from_account_id": "b", "currency": "EUR"}
    with pytest.raises(ValueError, match="TRANSFER_CREDIT"):
        records.command_record(leg)  # a saga leg is not a public record
    with pytest.raises(ValueError, match="amount"):
        records.command_record({k: v for k, v in deposit.items() if k != "amount"})
    # Unknown fields (a newer client's, Faust's metadata) are ignored, as parse_command does.
    extra = {**deposit, "note": "x", "__faust": {"ns": "elsewhere.Deposit"}}
    assert records.command_record(extra) == records.Deposit(
        command_id="c", account_id="a", amount=1
    )


# -------------------------------------------------------------------------- events

T = "2024-05-01T09:00:00.000Z"


def bank_events(states: dict[str, Account | None], commands: list[Command]) -> list[ev.Event]:
    """Decide each command on its account, fold its events, and carry its saga legs."""
    found: list[ev.Event] = []
    for command in commands:
        decision = decide(states.get(command.account_id), command, T)
        for event in decision.events:
            states[command.account_id] = evolve(states.get(command.account_id), event)
        found += decision.events
        found += bank_events(states, decision.legs)
    return found


def every_event_the_bank_emits() -> list[ev.Event]:
    def create(cid: str, account: str, **extra: Any) -> cmd.CreateAccount:
        return cmd.CreateAccount(
            command_id=cid, account_id=account, owner=f"Owner {account}", currency="EUR", **extra
        )

    return bank_events(
        {},
        [
            create("e1", "alice", overdraft_limit=100),
            create("e2", "bob"),
            cmd.Deposit(command_id="e3", account_id="alice", amount=500),
            cmd.Withdraw(command_id="e4", account_id="alice", amount=120),
            # Debited, credited, settled.
            cmd.TransferMoney(command_id="e5", account_id="alice", to_account_id="bob", amount=80),
            # Debited, then refunded: there is no carol.
            cmd.TransferMoney(command_id="e6", account_id="alice", to_account_id="carol", amount=7),
            cmd.Withdraw(command_id="e7", account_id="alice", amount=10**6),
            cmd.Deposit(command_id="e8", account_id="bob", amount=1, expected_version=0),
            create("e9", "dave"),
            cmd.CloseAccount(command_id="e10", account_id="dave"),
            cmd.SetLimits(command_id="e11", account_id="bob", daily_transfer_limit=500),
        ],
    )


EVENTS = every_event_the_bank_emits()


def test_the_scenario_emits_every_event_type() -> None:
    assert {event.type for event in EVENTS} == set(ev.EVENT_TYPES)
    reasons = {e.reason for e in EVENTS if isinstance(e, ev.CommandRejected)}
    assert reasons == {"INSUFFICIENT_FUNDS", "VERSION_CONFLICT"}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type}-{e.command_id}")
def test_every_event_the_bank_emits_is_read_into_its_record_with_every_field(
    event: ev.Event,
) -> None:
    data = event.to_dict()
    record = records.event_record(orjson.loads(codec.dumps(data)))
    assert type(record) is records.EVENT_RECORDS[event.type]
    assert record.type == event.type
    assert record.to_representation() == data
    assert record.dumps() == codec.dumps(data)  # same fields, same order, same bytes
    assert ev.event_from_dict(orjson.loads(record.dumps())) == event


def test_an_event_of_an_older_schema_is_upcast_as_it_is_read() -> None:
    v1 = {
        "type": "MoneyDeposited",
        "event_id": "e",
        "command_id": "c",
        "account_id": "a",
        "seq": 2,
        "amount": 5,
        "balance": 5,
    }
    record = records.event_record(v1)
    assert record.schema_version == ev.SCHEMA_VERSION
    assert record.to_representation() == ev.event_from_dict(v1).to_dict()


def message(value: bytes, key: bytes = b"alice") -> Message:
    return Message(
        topic="events",
        partition=0,
        offset=0,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=key,
        value=value,
        checksum=None,
    )


async def test_the_typed_events_topic_decodes_each_event_into_its_record() -> None:
    for event in EVENTS:
        decoded = await typed_events.decode(message(codec.dumps(event.to_dict())), propagate=True)
        assert decoded.key == "alice"
        assert type(decoded.value) is records.EVENT_RECORDS[event.type]
        assert decoded.value == records.event_record(event.to_dict())
    with pytest.raises(ValueDecodeError):
        await typed_events.decode(message(b'{"type":"SomethingNew"}'), propagate=True)


# ------------------------------------------------- Records into the real command agent


@pytest.fixture()
async def harness() -> AsyncIterator[Any]:
    """The command agent under ``test_context``, its output recorded (as tests/event_processor)."""
    async for agent in running_harness():
        yield agent


async def put(agent: Any, record: records.CommandRecord) -> Any:
    """Put a Record where Kafka would: on its account's partition, as its wire bytes.

    The agent reads raw bytes (so bad input can be dead-lettered), so the Record goes in
    as a Faust user's typed topic writes it: no change to the agent is needed.
    """
    key, value = wire(record)
    return [await send(agent, value, key=key.decode())]


async def deliver_legs(agent: Any) -> None:
    """Carry the saga legs the agent sent (bundles on ``commands``) back to it, until none."""
    delivered = 0
    while delivered < len(sent := agent.outbox.on(commands_topic)):
        for bundle in sent[delivered:]:
            delivered += 1
            await agent.put(bundle.value, key=bundle.key, partition=bundle.partition)
            assert set(last_outcomes(agent)) == {Handled.APPLIED}


async def test_typed_records_put_into_the_command_agent_are_applied(harness: Any) -> None:
    sent: list[records.CommandRecord] = [
        records.CreateAccount(
            command_id="rec-1", account_id="rec-ann", owner="Ann", currency="EUR"
        ),
        records.CreateAccount(
            command_id="rec-2", account_id="rec-ben", owner="Ben", currency="EUR"
        ),
        records.Deposit(command_id="rec-3", account_id="rec-ann", amount=1_000),
        records.Withdraw(command_id="rec-4", account_id="rec-ann", amount=300),
        records.TransferMoney(
            command_id="rec-5", account_id="rec-ann", to_account_id="rec-ben", amount=200
        ),
    ]
    for record in sent:
        assert await put(harness, record) == [Handled.APPLIED]
    await deliver_legs(harness)  # credit on rec-ben, then settle on rec-ann
    # A stale expected_version is decided, and rejected, like any client's command.
    stale = records.Withdraw(command_id="rec-6", account_id="rec-ben", amount=1, expected_version=0)
    for record in (
        stale,
        records.Withdraw(command_id="rec-7", account_id="rec-ben", amount=200),
        records.CloseAccount(command_id="rec-8", account_id="rec-ben"),
    ):
        assert await put(harness, record) == [Handled.APPLIED]

    written = [records.event_record(orjson.loads(r.value)) for r in harness.outbox.on(events_topic)]
    assert [(e.type, e.account_id, e.command_id) for e in written] == [
        ("AccountCreated", "rec-ann", "rec-1"),
        ("AccountCreated", "rec-ben", "rec-2"),
        ("MoneyDeposited", "rec-ann", "rec-3"),
        ("MoneyWithdrawn", "rec-ann", "rec-4"),
        ("TransferDebited", "rec-ann", "rec-5"),
        ("TransferCredited", "rec-ben", "rec-5"),
        ("TransferSettled", "rec-ann", "rec-5"),
        ("CommandRejected", "rec-ben", "rec-6"),
        ("MoneyWithdrawn", "rec-ben", "rec-7"),
        ("AccountClosed", "rec-ben", "rec-8"),
    ]
    deposited, rejected = written[2], written[7]
    assert isinstance(deposited, records.MoneyDeposited)
    assert (deposited.amount, deposited.balance, deposited.currency) == (1_000, 1_000, "EUR")
    assert isinstance(rejected, records.CommandRejected)
    assert rejected.reason == "VERSION_CONFLICT"
    assert rejected.command == orjson.loads(stale.dumps())  # the command as it was sent
    assert all(type(e) is records.EVENT_RECORDS[e.type] for e in written)


async def test_a_copy_of_a_typed_record_is_a_duplicate(harness: Any) -> None:
    create = records.CreateAccount(
        command_id="rec-d1", account_id="rec-cy", owner="Cy", currency="USD"
    )
    deposit = records.Deposit(command_id="rec-d2", account_id="rec-cy", amount=5)
    assert await put(harness, create) == [Handled.APPLIED]
    assert await put(harness, deposit) == [Handled.APPLIED]
    assert await put(harness, deposit) == [Handled.DUPLICATE]
