"""Agent tests with Faust's own harness (``agent.test_context()``, memory tables).

These drive the real agent and tables without a broker; the outbox records what would
be produced. The same scenarios against a real broker live in tests/integration.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from banking_app.event_processor import agent as agents
from banking_app.event_processor.agent import Handled
from banking_app.event_processor.idempotency import AccountRow
from banking_app.event_processor.tables import accounts_table
from banking_app.runtime import metrics
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import (
    commands_topic,
    dead_letters_topic,
    partition_for,
)
from banking_app.runtime.turns import TURN
from support.agent_harness import (
    balance,
    bundle,
    create_account,
    credit,
    deliver_claims,
    events,
    open_accounts,
    send,
    send_bundle,
    send_take,
)


async def test_a_deposit_is_applied_once_and_its_copy_is_ignored(harness: Any) -> None:
    create = create_account("c1", "alice", "Alice")
    deposit = {"type": "DEPOSIT", "command_id": "c2", "account_id": "alice", "amount": 500}
    assert await send(harness, create) is Handled.APPLIED
    assert await send(harness, deposit) is Handled.APPLIED
    assert balance("alice") == 500

    assert await send(harness, deposit) is Handled.DUPLICATE
    assert balance("alice") == 500
    assert [e["type"] for e in events(harness)] == ["AccountCreated", "MoneyDeposited"]
    assert [e["seq"] for e in events(harness)] == [1, 2]


async def test_a_redelivered_withdrawal_counts_once_against_the_daily_limit(
    harness: Any,
) -> None:
    await send(harness, create_account("l1", "lena", "Lena", daily_withdrawal_limit=100))
    await send(
        harness, {"type": "DEPOSIT", "command_id": "l2", "account_id": "lena", "amount": 500}
    )
    withdraw = {"type": "WITHDRAW", "command_id": "l3", "account_id": "lena", "amount": 60}
    assert await send(harness, withdraw) is Handled.APPLIED
    assert await send(harness, withdraw) is Handled.DUPLICATE
    rest = {"type": "WITHDRAW", "command_id": "l4", "account_id": "lena", "amount": 40}
    assert await send(harness, rest) is Handled.APPLIED  # 60 once, so 40 is within 100
    assert balance("lena") == 400
    over = {"type": "WITHDRAW", "command_id": "l5", "account_id": "lena", "amount": 1}
    await send(harness, over)
    assert (events(harness)[-1]["type"], events(harness)[-1]["reason"]) == (
        "CommandRejected",
        "LIMIT_EXCEEDED",
    )
    assert balance("lena") == 400


async def test_a_rejection_is_an_event_and_changes_nothing(harness: Any) -> None:
    await send(harness, create_account("k1", "bob", "Bob", currency="USD", overdraft_limit=100))
    await send(
        harness, {"type": "WITHDRAW", "command_id": "k2", "account_id": "bob", "amount": 101}
    )
    assert balance("bob") == 0
    rejected = events(harness)[-1]
    assert rejected["type"] == "CommandRejected"
    assert rejected["reason"] == "INSUFFICIENT_FUNDS"
    assert "seq" not in rejected

    await send(
        harness, {"type": "WITHDRAW", "command_id": "k3", "account_id": "bob", "amount": 100}
    )
    assert balance("bob") == -100
    assert events(harness)[-1]["seq"] == 2


async def test_a_transfer_sends_its_legs_bundled_on_their_accounts_partitions(
    harness: Any,
) -> None:
    await open_accounts(harness, "src", "dst")
    await send(harness, {"type": "DEPOSIT", "command_id": "d", "account_id": "src", "amount": 80})
    at = 1_700_000_123.456
    transfer = {
        "type": "TRANSFER_MONEY",
        "command_id": "t",
        "account_id": "src",
        "to_account_id": "dst",
        "amount": 30,
    }
    await harness.put(
        orjson.dumps(transfer), key=b"src", partition=partition_for(b"src", 8), timestamp=at
    )
    await deliver_claims(harness)  # the transfer's id is claimed, then it is decided
    assert balance("src") == 50
    [record] = harness.outbox.on(commands_topic)
    assert record.partition == partition_for(b"dst", 8)
    [envelope] = orjson.loads(record.value)
    # The leg keeps the transfer's timestamp, in milliseconds.
    assert envelope["timestamp"] == 1_700_000_123_456
    assert envelope["command"] == credit("t", "dst", 30)

    # Deliver the bundle as Kafka would, then the settle leg it produces.
    assert await send_bundle(harness, record.value, record.partition) == [Handled.APPLIED]
    assert balance("dst") == 30
    settle = harness.outbox.on(commands_topic)[-1]
    assert settle.partition == partition_for(b"src", 8)
    [leg] = orjson.loads(settle.value)
    assert leg["command"]["type"] == "TRANSFER_SETTLE"
    assert leg["timestamp"] == envelope["timestamp"]
    assert await send_bundle(harness, settle.value, settle.partition) == [Handled.APPLIED]
    row = AccountRow.from_dict(get_json(accounts_table, "src"))
    assert row.account is not None and row.account.in_flight == 0
    occurred = {e["type"]: e["occurred_at"] for e in events(harness)}
    assert occurred["TransferDebited"] == "2023-11-14T22:15:23.456Z"
    assert occurred["TransferCredited"] == occurred["TransferSettled"] == "2023-11-14T22:15:23.456Z"

    # A copy of the bundle, at a later offset, changes nothing.
    assert await send_bundle(harness, record.value, record.partition) == [Handled.DUPLICATE]
    assert balance("dst") == 30


async def test_a_transfer_stamped_minus_one_completes(harness: Any) -> None:
    """Kafka takes -1 ("none") as a record's timestamp; the legs keep the transfer's, so
    their envelopes must take it too. With 0 as the least, the credit leg was
    dead-lettered and the money stayed in flight for ever."""
    await open_accounts(harness, "early", "late")
    await send(harness, {"type": "DEPOSIT", "command_id": "e", "account_id": "early", "amount": 9})
    transfer = {
        "type": "TRANSFER_MONEY",
        "command_id": "t-1",
        "account_id": "early",
        "to_account_id": "late",
        "amount": 4,
    }
    own = partition_for(b"early", 8)
    await harness.put(orjson.dumps(transfer), key=b"early", partition=own, timestamp=-0.001)
    [record] = harness.outbox.on(commands_topic)
    assert [item["timestamp"] for item in orjson.loads(record.value)] == [-1]
    assert await send_bundle(harness, record.value, record.partition) == [Handled.APPLIED]
    settle = harness.outbox.on(commands_topic)[-1]
    assert await send_bundle(harness, settle.value, settle.partition) == [Handled.APPLIED]
    assert (balance("early"), balance("late")) == (5, 4)
    row = AccountRow.from_dict(get_json(accounts_table, "early"))
    assert row.account is not None and row.account.in_flight == 0


async def test_legs_in_one_bundle_for_one_account_each_apply_once(harness: Any) -> None:
    """Two legs share the record's offset; their index within it tells them apart."""
    await open_accounts(harness, "erin")
    own = partition_for(b"erin", 8)
    value = bundle(credit("t1", "erin", 5), credit("t2", "erin", 7), credit("t3", "erin", 11))
    assert await send_bundle(harness, value, own) == [Handled.APPLIED] * 3
    assert balance("erin") == 23
    row = AccountRow.from_dict(get_json(accounts_table, "erin"))
    assert (row.account.version, row.last_index) == (4, 2)  # type: ignore[union-attr]
    settles = [orjson.loads(r.value) for r in harness.outbox.on(commands_topic)]
    assert [[leg["command"]["command_id"] for leg in s] for s in settles] == [["t1", "t2", "t3"]]

    assert await send_bundle(harness, value, own) == [Handled.DUPLICATE] * 3
    assert balance("erin") == 23


async def test_a_bundle_item_that_is_not_a_leg_is_dead_lettered_alone(harness: Any) -> None:
    await open_accounts(harness, "fay")
    own = partition_for(b"fay", 8)
    deposit = {"type": "DEPOSIT", "command_id": "p1", "account_id": "fay", "amount": 9}
    value = orjson.dumps(
        [
            {"timestamp": 1, "command": deposit},  # a public command: not a leg
            {"command": credit("t4", "fay", 3)},  # no timestamp
            {"timestamp": 1, "command": credit("t5", "fay", 4)},
        ]
    )
    handled = await send_bundle(harness, value, own)
    assert handled == [Handled.DEAD_LETTERED, Handled.DEAD_LETTERED, Handled.APPLIED]
    assert balance("fay") == 4
    letters = [orjson.loads(r.value) for r in harness.outbox.on(dead_letters_topic)]
    assert [(e["reason"], e["index"]) for e in letters] == [
        ("MALFORMED_COMMAND", 0),
        ("MALFORMED_COMMAND", 1),
    ]
    assert "saga legs only" in letters[0]["detail"]
    assert orjson.loads(letters[0]["value"]) == deposit
    assert orjson.loads(letters[1]["value"]) == {"command": credit("t4", "fay", 3)}

    # An array sent under a key is a client's mistake, not a bundle: dead-lettered whole.
    value = bundle(credit("t7", "fay", 1))
    assert await send(harness, value, key="fay") is Handled.DEAD_LETTERED
    last = orjson.loads(harness.outbox.on(dead_letters_topic)[-1].value)
    assert (last["reason"], last["value"], "index" in last) == (
        "MALFORMED_COMMAND",
        value.decode(),
        False,
    )
    assert balance("fay") == 4


async def test_a_bundled_leg_off_its_accounts_partition_is_rekeyed(harness: Any) -> None:
    await open_accounts(harness, "gus")
    elsewhere = (partition_for(b"gus", 8) + 1) % 8
    value = bundle(credit("t6", "gus", 2), timestamp=1_700_000_000_250)
    assert await send_bundle(harness, value, elsewhere) == [Handled.REROUTED]
    assert balance("gus") == 0
    [forwarded] = harness.outbox.on(commands_topic)
    assert forwarded.key == b"gus" and forwarded.partition is None
    assert orjson.loads(forwarded.value) == credit("t6", "gus", 2)
    assert forwarded.timestamp == 1_700_000_000.25
    # Delivered as a plain record keyed by its account, it is applied.
    assert await send(harness, forwarded.value, key="gus") is Handled.APPLIED
    assert balance("gus") == 2


async def test_bad_input_goes_to_the_dead_letter_topic_with_a_reason(harness: Any) -> None:
    assert await send(harness, b"{not json", key="x") is Handled.DEAD_LETTERED
    assert (
        await send(
            harness, {"type": "DEPOSIT", "command_id": "m1", "account_id": "x", "amount": 1.5}
        )
        is Handled.DEAD_LETTERED
    )
    letters = [orjson.loads(r.value) for r in harness.outbox.on(dead_letters_topic)]
    assert [entry["reason"] for entry in letters] == ["INVALID_JSON", "MALFORMED_COMMAND"]
    assert letters[0]["value"] == "{not json"
    [rejected] = events(harness)
    assert (rejected["command_id"], rejected["reason"]) == ("m1", "MALFORMED_COMMAND")


async def test_a_record_off_its_accounts_partition_is_rekeyed_not_applied(harness: Any) -> None:
    command = create_account("r1", "carol", "Carol")
    assert await send(harness, orjson.dumps(command), key=None) is Handled.REROUTED
    assert get_json(accounts_table, "carol") is None
    [forwarded] = harness.outbox.on(commands_topic)
    assert forwarded.key == b"carol"
    assert orjson.loads(forwarded.value) == command


async def test_one_take_with_a_copy_inside_applies_each_command_once(harness: Any) -> None:
    """Several records decided in one take share the row they touch, as if one by one."""
    records = [
        create_account("b1", "dora", "Dora"),
        {"type": "DEPOSIT", "command_id": "b2", "account_id": "dora", "amount": 40},
        {"type": "DEPOSIT", "command_id": "b2", "account_id": "dora", "amount": 40},
        {"type": "WITHDRAW", "command_id": "b3", "account_id": "dora", "amount": 15},
    ]
    handled = await send_take(harness, "dora", records)
    assert handled == [Handled.APPLIED, Handled.APPLIED, Handled.DUPLICATE, Handled.APPLIED]
    assert balance("dora") == 25
    assert [(e["type"], e["seq"]) for e in events(harness)] == [
        ("AccountCreated", 1),
        ("MoneyDeposited", 2),
        ("MoneyWithdrawn", 3),
    ]


async def test_applied_inputs_are_counted_by_type_event_and_reason(harness: Any) -> None:
    def counts() -> list[float]:
        return [
            metrics.registry.get_sample_value(name, labels) or 0.0
            for name, labels in (
                ("banking_commands_total", {"type": "WITHDRAW"}),
                ("banking_events_total", {"type": "CommandRejected"}),
                ("banking_rejections_total", {"reason": "INSUFFICIENT_FUNDS"}),
                ("banking_events_total", {"type": "MoneyDeposited"}),
            )
        ]

    before = counts()
    await open_accounts(harness, "hal")
    await send_take(
        harness,
        "hal",
        [
            {"type": "WITHDRAW", "command_id": "w1", "account_id": "hal", "amount": 5},
            {"type": "WITHDRAW", "command_id": "w2", "account_id": "hal", "amount": 7},
            {"type": "DEPOSIT", "command_id": "w3", "account_id": "hal", "amount": 9},
        ],
    )
    after = counts()
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 2, 2, 1]


async def test_a_bundle_of_many_legs_gives_other_tasks_their_turns(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim or saga bundle can hold thousands of legs, decided in one record's turn:
    the web views, on the same event loop, waited seconds for it (the benchmark's query
    p99). The legs take turns with other tasks, as a take's records do: another task
    runs between every ``TURN`` of them."""
    await open_accounts(harness, "bundled")
    legs = [credit(f"many-legs-{n}", "bundled", 1) for n in range(10 * TURN)]
    ticks = 0
    seen_at_each_leg: list[int] = []
    isolated = agents.processor.isolated

    def counting(*args: Any) -> Handled:
        seen_at_each_leg.append(ticks)
        return isolated(*args)

    monkeypatch.setattr(agents.processor, "isolated", counting)
    handled = asyncio.Event()

    async def other_task() -> None:
        nonlocal ticks
        while not handled.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_task())
    results = await send_bundle(harness, bundle(*legs), partition_for(b"bundled", 8))
    handled.set()
    await ticker

    assert results == [Handled.APPLIED] * len(legs)
    assert balance("bundled") == len(legs)
    # The other task ran between the legs, not only before and after the bundle.
    assert len(set(seen_at_each_leg)) >= len(legs) // TURN, seen_at_each_leg
