"""The command agent under Faust's agent harness: helpers the agent tests share.

``harness`` (a fixture in tests/event_processor/conftest.py) runs the real agent and
tables in memory, with a ``RecordingOutbox`` in place of the broker.

A public command is decided once its command id is claimed, usually on another
partition. ``send`` and ``send_take`` play the broker for that round trip: they take
the claim legs' bundles off the outbox and deliver them (claims, then answers) until
none is left, and report what became of the command in the end. A test of the claims
themselves uses ``claim_bundles`` and ``send_bundle`` to deliver them by hand, in the
order it chooses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from banking_app.domain import parse_command
from banking_app.domain.commands import CLAIM_LEG_TYPES
from banking_app.event_processor import agent as agents
from banking_app.event_processor import leg_seal
from banking_app.event_processor.agent import Handled, Place, process_commands
from banking_app.event_processor.idempotency import AccountRow
from banking_app.event_processor.tables import (
    accounts_table,
    command_claims_table,
    command_offsets_table,
)
from banking_app.runtime import codec
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import Record, RecordingOutbox
from banking_app.runtime.settings import settings
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import commands_topic, events_topic, partition_for


async def running_harness() -> AsyncIterator[Any]:
    assert str(app.conf.store).startswith("memory:"), "tests/conftest.py sets it"
    app.finalize()
    outbox = RecordingOutbox()
    previous, agents.processor.outbox = agents.processor.outbox, outbox
    try:
        async with process_commands.test_context() as agent:
            agent.outbox = outbox
            yield agent
    finally:
        agents.processor.outbox = previous
        for table in (accounts_table, command_offsets_table, command_claims_table):
            table.data.clear()


def last_outcomes(agent: Any) -> Any:
    """What the agent's last take made (the harness numbers its takes in order)."""
    return agent.results[max(agent.results)]


def is_claim_bundle(record: Record) -> bool:
    """True for a bundle of claim legs (they travel apart from the saga legs)."""
    if record.topic is not commands_topic or record.key:
        return False
    items = orjson.loads(record.value)
    return bool(items) and items[0]["command"]["type"] in CLAIM_LEG_TYPES


def claim_bundles(agent: Any) -> list[Record]:
    """The claim legs' bundles the agent has sent and no one delivered, off its outbox."""
    outbox = agents.processor.outbox  # the harness's, or one a test put in its place
    found = [record for record in outbox.records if is_claim_bundle(record)]
    outbox.records = [record for record in outbox.records if not is_claim_bundle(record)]
    return found


async def deliver_claims(agent: Any) -> dict[Place, Handled]:
    """Deliver claim bundles, and those their delivery sends, until none is left; what
    became of each input released meanwhile, by where it sat."""
    start = max(agent.results, default=-1)
    while bundles := claim_bundles(agent):
        for record in bundles:
            await agent.put(record.value, key=b"", partition=record.partition)
    decided: dict[Place, Handled] = {}
    for take in sorted(agent.results):
        if take > start:
            decided.update(agent.results[take].decided)
    return decided


def resolved(
    handled: list[Handled], places: list[Place], decided: dict[Place, Handled]
) -> list[Handled]:
    """What became of each input in the end: a queued one's fate once released."""
    return [
        decided.get(place, fate) if fate is Handled.QUEUED else fate
        for fate, place in zip(handled, places, strict=True)
    ]


async def send(agent: Any, value: dict[str, Any] | bytes, key: str | None = None) -> Handled:
    """Put one record where Kafka would: keyed by the account, on its partition; and
    deliver the claims it makes until it is decided."""
    if isinstance(value, dict):
        key = key if key is not None else value["account_id"]
        value = orjson.dumps(value)
    key_bytes = codec.key(key) if key is not None else None
    partition = partition_for(key_bytes, 8) if key_bytes else 0
    event = await agent.put(value, key=key_bytes, partition=partition)
    outcomes = last_outcomes(agent)
    [handled] = outcomes  # one record, so a take of one
    decided = {**outcomes.decided, **await deliver_claims(agent)}
    [fate] = resolved([handled], [(partition, event.message.offset, 0)], decided)
    return fate


async def send_take(agent: Any, account_id: str, commands: list[dict[str, Any]]) -> list[Handled]:
    """Put the commands on the account's partition at once, so one take decides them;
    deliver their claims; what became of each."""
    key = codec.key(account_id)
    partition = partition_for(key, 8)
    places = []
    async with agent.new_value_processed:
        for command in commands:
            event = await agent.put(orjson.dumps(command), key=key, partition=partition, wait=False)
            places.append((partition, event.message.offset, 0))
        await agent.new_value_processed.wait()
    outcomes = last_outcomes(agent)
    decided = {**outcomes.decided, **await deliver_claims(agent)}
    return resolved(list(outcomes), places, decided)


def events(agent: Any) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in agent.outbox.on(events_topic)]


def balance(account_id: str) -> int:
    row = AccountRow.from_dict(get_json(accounts_table, account_id))
    assert row.account is not None
    return row.account.balance


def create_account(command_id: str, account_id: str, owner: str, **fields: Any) -> dict[str, Any]:
    """A CREATE_ACCOUNT command as a client sends it: in EUR, unless ``fields`` say otherwise."""
    return {
        "type": "CREATE_ACCOUNT",
        "command_id": command_id,
        "account_id": account_id,
        "owner": owner,
        "currency": "EUR",
        **fields,
    }


async def open_accounts(agent: Any, *accounts: str) -> None:
    for account in accounts:
        opened = await send(agent, create_account(f"open-{account}", account, account))
        assert opened is Handled.APPLIED


async def send_bundle(agent: Any, value: bytes, partition: int) -> list[Handled]:
    """Put a bundle record where the command agent sends it; what became of each leg.

    Claims it makes are not delivered: a test of the claims delivers them itself."""
    await agent.put(value, key=b"", partition=partition)
    return last_outcomes(agent)


def credit(command_id: str, to: str, amount: int, source: str = "src") -> dict[str, Any]:
    """A credit leg as a worker sends it: sealed with the workers' key."""
    leg = {
        "type": "TRANSFER_CREDIT",
        "command_id": command_id,
        "account_id": to,
        "from_account_id": source,
        "amount": amount,
        "currency": "EUR",
    }
    return leg_seal.sealed(parse_command(leg), settings.leg_key_bytes())


def bundle(*legs: dict[str, Any], timestamp: int = 1_700_000_000_000) -> bytes:
    return orjson.dumps([{"timestamp": timestamp, "command": leg} for leg in legs])
