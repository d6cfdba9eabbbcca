"""The command side against a real broker and a real worker subprocess.

Commands go in on ``commands`` as a plain Kafka client would send them; the tests read
what the worker wrote to ``events`` and ``commands-dlq``. The session broker and worker
are shared by every test, so each test works on accounts and command ids of its own
(a random prefix) and only ever reads records that carry them.

Completeness without sleeping: records of one account are on one partition and in
order, so once the last event expected for an account has been read, every event the
account got before it has been read too. Where a test asserts that something did *not*
happen on an account, it first sends a later "marker" command to that account and
waits for its event.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from banking_app.domain.events import TERMINAL_TYPES, event_from_dict
from banking_app.domain.ledger import Ledger
from banking_app.runtime.topics import partition_for
from support.cluster import Broker, Client, Worker, command

pytestmark = pytest.mark.kafka

PARTITIONS = 8
#: The fields that say what an event did (no ids, no timestamps).
SHAPE = ("type", "command_id", "seq", "amount", "balance", "reason")

Event = dict[str, Any]


# --------------------------------------------------------------------------- helpers


@pytest.fixture()
def uid() -> str:
    """A prefix that makes this test's account and command ids unique in the session."""
    return uuid.uuid4().hex[:10]


@pytest.fixture()
async def client(broker: Broker, worker: Worker) -> AsyncIterator[Client]:
    async with Client(broker) as running:
        yield running


def part(account_id: str) -> int:
    return partition_for(account_id.encode(), PARTITIONS)


def ids(prefix: str) -> Iterator[str]:
    """Command ids ``prefix-c1``, ``prefix-c2``, ... for one test."""
    n = 0
    while True:
        n += 1
        yield f"{prefix}-c{n}"


def create(command_id: str, account_id: str, currency: str = "EUR", **extra: Any) -> Event:
    return command(
        "CREATE_ACCOUNT", command_id, account_id, owner=f"owner of {account_id}",
        currency=currency, **extra,
    )  # fmt: skip


def deposit(command_id: str, account_id: str, amount: int, **extra: Any) -> Event:
    return command("DEPOSIT", command_id, account_id, amount=amount, **extra)


def withdraw(command_id: str, account_id: str, amount: int, **extra: Any) -> Event:
    return command("WITHDRAW", command_id, account_id, amount=amount, **extra)


def transfer(command_id: str, source: str, destination: str, amount: int) -> Event:
    return command("TRANSFER_MONEY", command_id, source, to_account_id=destination, amount=amount)


def shape(event: Event) -> Event:
    return {name: event[name] for name in SHAPE if name in event}


def of(events: list[Event], account_id: str) -> list[Event]:
    """The events of one account, in log order (they are all on one partition)."""
    return [e for e in events if e.get("account_id") == account_id]


def seen(*wanted: tuple[str, str, str]) -> Callable[[list[Event]], bool]:
    """``until`` for ``Client.read``: every (account_id, command_id, type) has been read."""

    def check(events: list[Event]) -> bool:
        have = {(e.get("account_id"), e.get("command_id"), e.get("type")) for e in events}
        return set(wanted) <= have

    return check


async def read_events(
    client: Client, accounts: set[str], *wanted: tuple[str, str, str]
) -> list[Event]:
    return await client.read(
        "events", until=seen(*wanted), where=lambda e: e.get("account_id") in accounts
    )


def assert_on_own_partitions(events: list[Event]) -> None:
    for event in events:
        assert event["_key"] == event["account_id"].encode(), event
        assert event["_partition"] == part(event["account_id"]), event


def assert_gapless(events: list[Event]) -> None:
    """Seqs are 1, 2, 3 ... in log order; rejections and settlements carry none."""
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    for event in events:
        assert ("seq" in event) == (event["type"] not in {"CommandRejected", "TransferSettled"})


def assert_balances_follow_amounts(events: list[Event]) -> None:
    """Every event's balance is the previous one plus or minus its amount."""
    sign = {"MoneyDeposited": 1, "TransferCredited": 1, "TransferRefunded": 1,
            "MoneyWithdrawn": -1, "TransferDebited": -1}  # fmt: skip
    balance = 0
    for event in events:
        if event["type"] in sign:
            balance += sign[event["type"]] * event["amount"]
            assert event["balance"] == balance, (event, balance)


def assert_ledger_clean(events: list[Event]) -> None:
    """The project's own books check: seqs, duplicates, money in flight, balances."""
    ledger = Ledger()
    for event in events:
        ledger.apply(event_from_dict({k: v for k, v in event.items() if not k.startswith("_")}))
    assert ledger.check() == []


def on_other_partitions(prefix: str, avoid: int) -> str:
    """An account id (or key) with ``prefix`` that does not hash to partition ``avoid``."""
    n = 0
    while part(f"{prefix}{n}") == avoid:
        n += 1
    return f"{prefix}{n}"


# ----------------------------------------------------------------------------- tests


async def test_lifecycle_create_deposit_withdraw(client: Client, uid: str) -> None:
    alice, bob = f"{uid}-alice", f"{uid}-bob"
    c = ids(uid)
    sent = [
        create(next(c), alice),
        create(next(c), bob, currency="USD", overdraft_limit=500),
        deposit(next(c), alice, 1000),
        withdraw(next(c), alice, 300),
        withdraw(next(c), bob, 200),  # into the overdraft
    ]
    for cmd in sent:
        await client.send(cmd)

    events = await read_events(
        client,
        {alice, bob},
        (alice, sent[3]["command_id"], "MoneyWithdrawn"),
        (bob, sent[4]["command_id"], "MoneyWithdrawn"),
    )

    assert [shape(e) for e in of(events, alice)] == [
        {"type": "AccountCreated", "command_id": sent[0]["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": sent[2]["command_id"], "seq": 2,
         "amount": 1000, "balance": 1000},
        {"type": "MoneyWithdrawn", "command_id": sent[3]["command_id"], "seq": 3,
         "amount": 300, "balance": 700},
    ]  # fmt: skip
    assert [shape(e) for e in of(events, bob)] == [
        {"type": "AccountCreated", "command_id": sent[1]["command_id"], "seq": 1},
        {"type": "MoneyWithdrawn", "command_id": sent[4]["command_id"], "seq": 2,
         "amount": 200, "balance": -200},
    ]  # fmt: skip
    created = of(events, bob)[0]
    assert (created["owner"], created["currency"], created["overdraft_limit"]) == (
        f"owner of {bob}",
        "USD",
        500,
    )
    assert of(events, alice)[1]["currency"] == "EUR"
    for account in (alice, bob):
        assert_gapless(of(events, account))
    assert_on_own_partitions(events)
    assert_ledger_clean(events)
    assert all(e["schema_version"] == 2 for e in events)
    # Event ids are unique: no event was written twice.
    assert len({e["event_id"] for e in events}) == len(events)


async def test_cross_partition_transfer_debits_credits_and_settles(
    client: Client, uid: str
) -> None:
    source = f"{uid}-src"
    destination = on_other_partitions(f"{uid}-dst", avoid=part(source))
    assert part(source) != part(destination)
    c = ids(uid)
    opening = [create(next(c), source), create(next(c), destination)]
    funding = deposit(next(c), source, 1000)
    move = transfer(next(c), source, destination, 400)
    tid = move["command_id"]
    for cmd in [*opening, funding, move]:
        await client.send(cmd)
    await read_events(
        client,
        {source, destination},
        (source, tid, "TransferDebited"),
        (destination, tid, "TransferCredited"),
        (source, tid, "TransferSettled"),
    )

    # Markers: later commands on both accounts, so nothing of the saga can still be due.
    # Closing the source proves the settlement cleared the money in flight.
    after = [
        deposit(next(c), destination, 1),
        withdraw(next(c), source, 600),
        command("CLOSE_ACCOUNT", next(c), source),
    ]
    for cmd in after:
        await client.send(cmd)
    events = await read_events(
        client,
        {source, destination},
        (destination, after[0]["command_id"], "MoneyDeposited"),
        (source, after[2]["command_id"], "AccountClosed"),
    )

    assert [shape(e) for e in of(events, source)] == [
        {"type": "AccountCreated", "command_id": opening[0]["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": funding["command_id"], "seq": 2,
         "amount": 1000, "balance": 1000},
        {"type": "TransferDebited", "command_id": tid, "seq": 3, "amount": 400, "balance": 600},
        {"type": "TransferSettled", "command_id": tid, "amount": 400},
        {"type": "MoneyWithdrawn", "command_id": after[1]["command_id"], "seq": 4,
         "amount": 600, "balance": 0},
        {"type": "AccountClosed", "command_id": after[2]["command_id"], "seq": 5},
    ]  # fmt: skip
    assert [shape(e) for e in of(events, destination)] == [
        {"type": "AccountCreated", "command_id": opening[1]["command_id"], "seq": 1},
        {"type": "TransferCredited", "command_id": tid, "seq": 2, "amount": 400, "balance": 400},
        {"type": "MoneyDeposited", "command_id": after[0]["command_id"], "seq": 3,
         "amount": 1, "balance": 401},
    ]  # fmt: skip

    saga = {e["type"]: e for e in events if e["command_id"] == tid}
    debited, credited = saga["TransferDebited"], saga["TransferCredited"]
    settled = saga["TransferSettled"]
    assert debited["_partition"] == part(source)
    assert credited["_partition"] == part(destination)
    assert settled["_partition"] == part(source)
    assert debited["transfer_id"] == credited["transfer_id"] == settled["transfer_id"] == tid
    assert (debited["to_account_id"], settled["to_account_id"]) == (destination, destination)
    assert credited["from_account_id"] == source
    assert debited["currency"] == credited["currency"] == "EUR"
    # A saga leg carries its parent's timestamp.
    assert debited["occurred_at"] == credited["occurred_at"] == settled["occurred_at"]
    terminal = [e for e in events if e["command_id"] == tid and e["type"] in TERMINAL_TYPES]
    assert [e["type"] for e in terminal] == ["TransferCredited"]
    assert len({e["event_id"] for e in events}) == len(events)
    for account in (source, destination):
        assert_gapless(of(events, account))
    assert_on_own_partitions(events)
    assert_ledger_clean(events)


async def test_failed_credit_is_refunded_with_its_reason(client: Client, uid: str) -> None:
    source, ghost, dollars = f"{uid}-eur", f"{uid}-ghost", f"{uid}-usd"
    c = ids(uid)
    opening = [create(next(c), source, "EUR"), create(next(c), dollars, "USD")]
    funding = deposit(next(c), source, 1000)
    to_ghost = transfer(next(c), source, ghost, 300)
    to_dollars = transfer(next(c), source, dollars, 200)
    for cmd in [*opening, funding, to_ghost, to_dollars]:
        await client.send(cmd)
    await read_events(
        client,
        {source},
        (source, to_ghost["command_id"], "TransferRefunded"),
        (source, to_dollars["command_id"], "TransferRefunded"),
    )

    # Markers. The credit legs were handled before the refunds were even sent, so these
    # come after them on the destinations' partitions. Creating the ghost now proves the
    # failed credit neither created it nor wrote an event for it.
    after = [
        create(next(c), ghost),
        deposit(next(c), dollars, 7),
        withdraw(next(c), source, 1000),
        command("CLOSE_ACCOUNT", next(c), source),  # nothing is still in flight
    ]
    for cmd in after:
        await client.send(cmd)
    events = await read_events(
        client,
        {source, ghost, dollars},
        (ghost, after[0]["command_id"], "AccountCreated"),
        (dollars, after[1]["command_id"], "MoneyDeposited"),
        (source, after[3]["command_id"], "AccountClosed"),
    )

    g, d = to_ghost["command_id"], to_dollars["command_id"]
    mine = of(events, source)
    assert [shape(e) for e in mine[:2]] == [
        {"type": "AccountCreated", "command_id": opening[0]["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": funding["command_id"], "seq": 2,
         "amount": 1000, "balance": 1000},
    ]  # fmt: skip
    # Each refund comes back after its own debit, from another partition: the two
    # debits and two refunds take seqs 3-6 in an order the test does not fix.
    middle = mine[2:6]
    assert sorted((e["type"], e["command_id"], e["amount"]) for e in middle) == [
        ("TransferDebited", g, 300),
        ("TransferDebited", d, 200),
        ("TransferRefunded", g, 300),
        ("TransferRefunded", d, 200),
    ]
    kinds = [(e["type"], e["command_id"]) for e in middle]
    for tid in (g, d):
        assert kinds.index(("TransferDebited", tid)) < kinds.index(("TransferRefunded", tid))
    assert [e["seq"] for e in middle] == [3, 4, 5, 6]
    assert_balances_follow_amounts(mine)
    assert middle[-1]["balance"] == 1000  # both refunds restored the source
    assert [shape(e) for e in mine[6:]] == [
        {"type": "MoneyWithdrawn", "command_id": after[2]["command_id"], "seq": 7,
         "amount": 1000, "balance": 0},
        {"type": "AccountClosed", "command_id": after[3]["command_id"], "seq": 8},
    ]  # fmt: skip
    refunds = {e["command_id"]: e for e in mine if e["type"] == "TransferRefunded"}
    assert {k: v["reason"] for k, v in refunds.items()} == {
        g: "ACCOUNT_NOT_FOUND",
        d: "CURRENCY_MISMATCH",
    }
    assert refunds[g]["to_account_id"] == ghost and refunds[d]["to_account_id"] == dollars
    assert all(e["transfer_id"] == e["command_id"] for e in refunds.values())

    assert [shape(e) for e in of(events, ghost)] == [
        {"type": "AccountCreated", "command_id": after[0]["command_id"], "seq": 1},
    ]
    assert [shape(e) for e in of(events, dollars)] == [
        {"type": "AccountCreated", "command_id": opening[1]["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": after[1]["command_id"], "seq": 2,
         "amount": 7, "balance": 7},
    ]  # fmt: skip
    for tid in (g, d):
        outcome = [e["type"] for e in events if e["command_id"] == tid]
        assert outcome == ["TransferDebited", "TransferRefunded"], (tid, outcome)
    for account in (source, ghost, dollars):
        assert_gapless(of(events, account))
    assert_on_own_partitions(events)
    assert_ledger_clean(events)


async def test_rejections_change_nothing(client: Client, uid: str) -> None:
    acct, other = f"{uid}-acct", f"{uid}-other"
    c = ids(uid)
    script: list[tuple[Event, Event]] = []

    def step(cmd: Event, **expected: Any) -> None:
        script.append((cmd, {**expected, "command_id": cmd["command_id"]}))

    def rejected(cmd: Event, reason: str) -> None:
        step(cmd, type="CommandRejected", reason=reason)

    step(create(next(c), acct), type="AccountCreated", seq=1)
    step(deposit(next(c), acct, 100), type="MoneyDeposited", seq=2, amount=100, balance=100)
    rejected(create(next(c), acct), "ACCOUNT_ALREADY_EXISTS")
    step(deposit(next(c), acct, 10), type="MoneyDeposited", seq=3, amount=10, balance=110)
    rejected(withdraw(next(c), acct, 111), "INSUFFICIENT_FUNDS")
    step(withdraw(next(c), acct, 10), type="MoneyWithdrawn", seq=4, amount=10, balance=100)
    rejected(transfer(next(c), acct, acct, 10), "SAME_ACCOUNT")
    step(deposit(next(c), acct, 5), type="MoneyDeposited", seq=5, amount=5, balance=105)
    rejected(transfer(next(c), acct, other, 200), "INSUFFICIENT_FUNDS")
    rejected(deposit(next(c), acct, 0), "INVALID_AMOUNT")
    rejected(deposit(next(c), acct, 5, expected_version=4), "VERSION_CONFLICT")
    step(
        deposit(next(c), acct, 5, expected_version=5),
        type="MoneyDeposited", seq=6, amount=5, balance=110,
    )  # fmt: skip
    rejected(command("CLOSE_ACCOUNT", next(c), acct), "BALANCE_NOT_ZERO")
    step(withdraw(next(c), acct, 110), type="MoneyWithdrawn", seq=7, amount=110, balance=0)
    rejected(command("CLOSE_ACCOUNT", next(c), acct, expected_version=6), "VERSION_CONFLICT")
    step(command("CLOSE_ACCOUNT", next(c), acct, expected_version=7), type="AccountClosed", seq=8)
    rejected(deposit(next(c), acct, 1), "ACCOUNT_CLOSED")
    rejected(withdraw(next(c), acct, 1), "ACCOUNT_CLOSED")
    rejected(command("CLOSE_ACCOUNT", next(c), acct), "ACCOUNT_CLOSED")
    rejected(deposit(next(c), other, 1), "ACCOUNT_NOT_FOUND")

    for cmd, _ in script:
        await client.send(cmd)
    last = {acct: script[-2][0]["command_id"], other: script[-1][0]["command_id"]}
    events = await read_events(
        client, {acct, other}, *((a, cid, "CommandRejected") for a, cid in last.items())
    )

    assert [shape(e) for e in of(events, acct)] == [
        expected for cmd, expected in script if cmd["account_id"] == acct
    ]
    assert [shape(e) for e in of(events, other)] == [script[-1][1]]
    for event in events:
        if event["type"] == "CommandRejected":
            sent = next(cmd for cmd, _ in script if cmd["command_id"] == event["command_id"])
            assert event["command_type"] == sent["type"]
            assert sent.items() <= event["command"].items()
            assert event["detail"]
    assert_gapless(of(events, acct))
    assert_on_own_partitions(events)
    assert_ledger_clean(events)


async def test_duplicate_command_is_applied_once(client: Client, uid: str) -> None:
    acct = f"{uid}-dup"
    c = ids(uid)
    opening = create(next(c), acct)
    twice = deposit(next(c), acct, 100)
    await client.send(opening)
    offsets = []
    for _ in range(3):
        sent = await client.producer.send_and_wait(
            "commands", orjson.dumps(twice), key=acct.encode()
        )
        offsets.append(sent.offset)
    assert len(set(offsets)) == 3  # three copies at three offsets
    later = deposit(next(c), acct, 50)
    await client.send(later)
    events = await read_events(client, {acct}, (acct, later["command_id"], "MoneyDeposited"))
    assert [shape(e) for e in of(events, acct)] == [
        {"type": "AccountCreated", "command_id": opening["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": twice["command_id"], "seq": 2,
         "amount": 100, "balance": 100},
        {"type": "MoneyDeposited", "command_id": later["command_id"], "seq": 3,
         "amount": 50, "balance": 150},
    ]  # fmt: skip

    # A copy long after the original, once the row's window of recent ids (16) has
    # moved on, is still recognised (by the claim of its command id).
    filler = [deposit(next(c), acct, 1) for _ in range(17)]
    for cmd in filler:
        await client.send(cmd)
    await client.send(twice)
    final = deposit(next(c), acct, 1000)
    await client.send(final)
    events = await read_events(client, {acct}, (acct, final["command_id"], "MoneyDeposited"))
    mine = of(events, acct)
    assert [e["command_id"] for e in mine].count(twice["command_id"]) == 1
    assert not [e for e in mine if e["type"] == "CommandRejected"]
    assert [shape(e) for e in mine[3:]] == [
        *(
            {"type": "MoneyDeposited", "command_id": cmd["command_id"], "seq": 4 + n,
             "amount": 1, "balance": 151 + n}
            for n, cmd in enumerate(filler)
        ),
        {"type": "MoneyDeposited", "command_id": final["command_id"], "seq": 21,
         "amount": 1000, "balance": 1167},
    ]  # fmt: skip
    assert_gapless(mine)
    assert_on_own_partitions(mine)
    assert_ledger_clean(mine)


async def test_a_command_id_reused_across_partitions_is_applied_once(
    client: Client, uid: str
) -> None:
    """The issue's case: one command id, deposits of 10 to four accounts on four
    partitions. One is applied; the others are refused as COMMAND_ID_REUSED, each with
    an event id of its own. Then an account's deposit and the withdrawal of all of it,
    whose ids are claimed on other partitions, are still decided in that order."""
    accounts: list[str] = []
    n = 0
    while len(accounts) < 4:
        candidate = f"{uid}-re{n}"
        n += 1
        if part(candidate) not in {part(a) for a in accounts}:
            accounts.append(candidate)
    c = ids(uid)
    for account in accounts:
        await client.send(create(next(c), account))
    reused = f"{uid}-same-id"
    for account in accounts:
        await client.send(deposit(reused, account, 10))
    own = part(accounts[0])
    into = next(f"{uid}-in{k}" for k in range(1000) if part(f"{uid}-in{k}") != own)
    out = next(f"{uid}-out{k}" for k in range(1000) if part(f"{uid}-out{k}") != own)
    await client.send(deposit(into, accounts[0], 500))
    await client.send(withdraw(out, accounts[0], 500))
    markers = [deposit(next(c), account, 1) for account in accounts]
    for marker in markers:
        await client.send(marker)
    events = await read_events(
        client,
        set(accounts),
        *((m["account_id"], m["command_id"], "MoneyDeposited") for m in markers),
    )
    under = [e for e in events if e["command_id"] == reused]
    applied = [e for e in under if e["type"] == "MoneyDeposited"]
    refused = [e for e in under if e["type"] == "CommandRejected"]
    assert len(applied) == 1 and len(refused) == 3
    assert {e["reason"] for e in refused} == {"COMMAND_ID_REUSED"}
    assert {e["account_id"] for e in under} == set(accounts)
    assert len({e["event_id"] for e in under}) == 4
    mine = of(events, accounts[0])
    assert [e["type"] for e in mine if e["command_id"] in (into, out)] == [
        "MoneyDeposited",
        "MoneyWithdrawn",
    ]
    for account in accounts:
        assert_gapless(of(events, account))
    assert_on_own_partitions(events)
    assert_ledger_clean(events)


async def test_malformed_input_is_dead_lettered_and_the_rest_processed(
    client: Client, worker: Worker, uid: str
) -> None:
    acct = f"{uid}-mal"
    key = acct.encode()
    c = ids(uid)
    float_id = f"{uid}-float"
    bad: list[tuple[bytes, str]] = [  # (value, reason)
        (b"this is not json " + key, "INVALID_JSON"),
        (orjson.dumps(deposit(f"{uid}-trunc", acct, 5))[:-7], "INVALID_JSON"),
        (orjson.dumps({"type": "STEAL_MONEY", "account_id": acct, "amount": 5}),
         "MALFORMED_COMMAND"),
        (orjson.dumps({"type": "DEPOSIT", "command_id": float_id, "account_id": acct,
                       "amount": 10.5}),
         "MALFORMED_COMMAND"),
        (orjson.dumps([deposit(f"{uid}-arr", acct, 5)]), "MALFORMED_COMMAND"),
        (b"\xff\xfe\x00\x81garbage\xc3(" + key, "INVALID_JSON"),
    ]  # fmt: skip
    good = [
        create(next(c), acct),
        deposit(next(c), acct, 100),
        deposit(next(c), acct, 200),
        deposit(next(c), acct, 300),
        withdraw(next(c), acct, 50),
        deposit(next(c), acct, 400),
        deposit(next(c), acct, 1),
    ]
    # good, bad, good, bad, ... all keyed by the account, so all on one partition.
    for n, cmd in enumerate(good):
        await client.send(cmd)
        if n < len(bad):
            await client.send(bad[n][0], key=key)

    events = await read_events(client, {acct}, (acct, good[-1]["command_id"], "MoneyDeposited"))
    # A malformed command is refused as it arrives; the good ones wait for their ids'
    # claims, so the refusal may come before the outcomes of commands sent before it.
    refusals = [shape(e) for e in of(events, acct) if e["type"] == "CommandRejected"]
    assert refusals == [
        {"type": "CommandRejected", "command_id": float_id, "reason": "MALFORMED_COMMAND"}
    ]
    assert [shape(e) for e in of(events, acct) if e["type"] != "CommandRejected"] == [
        {"type": "AccountCreated", "command_id": good[0]["command_id"], "seq": 1},
        {"type": "MoneyDeposited", "command_id": good[1]["command_id"], "seq": 2,
         "amount": 100, "balance": 100},
        {"type": "MoneyDeposited", "command_id": good[2]["command_id"], "seq": 3,
         "amount": 200, "balance": 300},
        {"type": "MoneyDeposited", "command_id": good[3]["command_id"], "seq": 4,
         "amount": 300, "balance": 600},
        {"type": "MoneyWithdrawn", "command_id": good[4]["command_id"], "seq": 5,
         "amount": 50, "balance": 550},
        {"type": "MoneyDeposited", "command_id": good[5]["command_id"], "seq": 6,
         "amount": 400, "balance": 950},
        {"type": "MoneyDeposited", "command_id": good[6]["command_id"], "seq": 7,
         "amount": 1, "balance": 951},
    ]  # fmt: skip
    [rejection] = [e for e in events if e["type"] == "CommandRejected"]
    assert rejection["command_type"] == "DEPOSIT"
    assert rejection["command"] == orjson.loads(bad[3][0])
    assert "integer" in rejection["detail"]
    assert_on_own_partitions(events)
    assert_ledger_clean(events)

    letters = await client.read(
        "commands-dlq", until=lambda found: len(found) >= len(bad), where=lambda r: r["_key"] == key
    )
    assert [(entry["reason"], entry["value"]) for entry in letters] == [
        (reason, _printable(value)) for value, reason in bad
    ]
    for entry in letters:
        assert entry["topic"] == "commands"
        assert entry["partition"] == part(acct)
        assert entry["key"] == acct
        assert entry["detail"]
        assert entry["_partition"] == part(acct)
    offsets = [entry["offset"] for entry in letters]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert letters[-1]["value"].startswith("base64:")

    assert worker.process is not None and worker.process.poll() is None
    assert worker.health() == 200


async def test_corrected_retry_of_a_malformed_command_is_refused_as_a_reuse(
    client: Client, uid: str
) -> None:
    """The command id is the idempotency key (README): the malformed command was its
    first use, and is refused MALFORMED_COMMAND; the corrected retry under the same id is
    another command, refused COMMAND_ID_REUSED under an event id of its own. Nothing
    moves: a client corrects a command under a new id."""
    acct = f"{uid}-retry"
    c = ids(uid)
    opening = create(next(c), acct)
    retried = f"{uid}-retried"
    await client.send(opening)
    await client.send(deposit(retried, acct, 0) | {"amount": 2.5})  # MALFORMED_COMMAND
    await client.send(deposit(retried, acct, 250))  # the client's corrected retry
    marker = deposit(next(c), acct, 1)
    await client.send(marker)
    events = await read_events(client, {acct}, (acct, marker["command_id"], "MoneyDeposited"))
    mine = of(events, acct)
    outcomes = [e for e in mine if e["command_id"] == retried and e["type"] in TERMINAL_TYPES]
    assert [(e["type"], e["reason"]) for e in outcomes] == [
        ("CommandRejected", "MALFORMED_COMMAND"),
        ("CommandRejected", "COMMAND_ID_REUSED"),
    ], [shape(e) for e in outcomes]
    assert len({e["event_id"] for e in mine}) == len(mine), "two events share an event id"
    assert [e["balance"] for e in mine if e["type"] == "MoneyDeposited"] == [1]
    assert_ledger_clean(events)


async def test_resent_malformed_command_is_rejected_once(client: Client, uid: str) -> None:
    acct = f"{uid}-twice"
    c = ids(uid)
    await client.send(create(next(c), acct))
    bad = orjson.dumps(deposit(f"{uid}-bad", acct, 0) | {"amount": "100"})
    now = int(time.time() * 1000)
    for at in (now, now + 5000):  # the client resends it five seconds later
        await client.producer.send_and_wait("commands", bad, key=acct.encode(), timestamp_ms=at)
    # The refusal is sent from the bad id's claim partition, not the account's, so a
    # deposit to the account says nothing about it; one whose id is claimed on the same
    # partition, after the resend, does: by its event, both copies were handled.
    after = next(
        f"{uid}-after-{n}" for n in range(10_000) if part(f"{uid}-after-{n}") == part(f"{uid}-bad")
    )
    marker = deposit(after, acct, 1)
    await client.send(marker)
    events = await read_events(
        client,
        {acct},
        (acct, f"{uid}-bad", "CommandRejected"),
        (acct, marker["command_id"], "MoneyDeposited"),
    )
    rejections = [e for e in of(events, acct) if e["command_id"] == f"{uid}-bad"]
    # Two CommandRejected under one event id with different occurred_at would be a
    # command decided twice ("emitted twice with different content" in the ledger).
    assert len(rejections) == 1, [(e["event_id"], e["occurred_at"]) for e in rejections]
    assert_ledger_clean(events)


def _printable(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


async def test_record_off_its_partition_is_rekeyed_and_applied_once(
    client: Client, uid: str
) -> None:
    acct = f"{uid}-rekey"
    own = part(acct)
    other_partition = (own + 1) % PARTITIONS
    wrong_key = on_other_partitions(f"{uid}-wrong", avoid=own)
    c = ids(uid)
    opening = create(next(c), acct)
    await client.send(opening)
    no_key_elsewhere = deposit(next(c), acct, 1)
    no_key_at_home = deposit(next(c), acct, 10)
    keyed_wrong = deposit(next(c), acct, 100)
    value = orjson.dumps
    await client.producer.send_and_wait(
        "commands", value(no_key_elsewhere), key=None, partition=other_partition
    )
    await client.producer.send_and_wait("commands", value(no_key_at_home), key=None, partition=own)
    await client.send(keyed_wrong, key=wrong_key.encode())
    moved = (no_key_elsewhere, no_key_at_home, keyed_wrong)
    await read_events(client, {acct}, *((acct, m["command_id"], "MoneyDeposited") for m in moved))

    marker = deposit(next(c), acct, 1000)
    await client.send(marker)
    events = await read_events(client, {acct}, (acct, marker["command_id"], "MoneyDeposited"))
    mine = of(events, acct)
    assert [shape(e) for e in mine[:1]] == [
        {"type": "AccountCreated", "command_id": opening["command_id"], "seq": 1}
    ]
    # The three re-keyed records come back in whatever order; each is applied once.
    middle = mine[1:4]
    assert sorted(e["command_id"] for e in middle) == sorted(m["command_id"] for m in moved)
    balance = 0
    for seq, event in enumerate(middle, start=2):
        balance += event["amount"]
        assert (event["type"], event["seq"], event["balance"]) == ("MoneyDeposited", seq, balance)
    assert [shape(e) for e in mine[4:]] == [
        {"type": "MoneyDeposited", "command_id": marker["command_id"], "seq": 5,
         "amount": 1000, "balance": 1111},
    ]  # fmt: skip
    assert_on_own_partitions(mine)
    assert_ledger_clean(mine)
    assert all(e["_partition"] == own for e in mine)


async def test_restart_recovers_state_from_changelogs(tmp_path: Path) -> None:
    """Stop (SIGTERM) and start on a new data dir; kill (SIGKILL) and start on the same one.

    Commands go in bursts over accounts that share partitions, so the worker handles
    them in takes and writes several rows of one changelog partition in one produce
    batch, which recovery must read to its last record (see banking_app/runtime/offsets.py).
    """
    candidates = [f"restart-{n}" for n in range(200)]
    accounts = [a for a in candidates if part(a) == 0][:4] + [
        a for a in candidates if part(a) == 5
    ][:4]
    assert len(accounts) == 8
    c = ids("restart")
    history: dict[str, list[tuple[str, int, int | None]]] = {a: [] for a in accounts}

    async def burst(client: Client, commands: list[tuple[Event, str, int | None]]) -> None:
        """Send all at once, wait for all their events, check every account's history."""
        sent = [
            await client.producer.send(
                "commands", orjson.dumps(cmd), key=cmd["account_id"].encode()
            )
            for cmd, _, _ in commands
        ]
        await asyncio.gather(*sent)
        for cmd, kind, balance in commands:
            history[cmd["account_id"]].append((kind, len(history[cmd["account_id"]]) + 1, balance))
        events = await read_events(
            client,
            set(accounts),
            *((cmd["account_id"], cmd["command_id"], kind) for cmd, kind, _ in commands),
        )
        for account in accounts:
            assert_continues(of(events, account), history[account])

    with Broker.start() as broker:
        async with Client(broker) as client:
            # A fresh worker on a fresh broker.
            first = await _start(broker, tmp_path / "first")
            try:
                await burst(client, [
                    *((create(next(c), a), "AccountCreated", None) for a in accounts),
                    *((deposit(next(c), a, 100 + n), "MoneyDeposited", 100 + n)
                      for n, a in enumerate(accounts)),
                ])  # fmt: skip
            finally:
                await asyncio.to_thread(first.stop)  # SIGTERM

            # A new data dir: the tables can only come back from the changelogs.
            second = await _start(broker, tmp_path / "second")
            try:
                await burst(client, [
                    (deposit(next(c), a, 50), "MoneyDeposited", 150 + n)
                    for n, a in enumerate(accounts)
                ])  # fmt: skip
            finally:
                await asyncio.to_thread(second.kill)  # SIGKILL: no clean shutdown

            # The same data dir, as the killed worker left it.
            third = await _start(broker, second.directory)
            try:
                await burst(client, [
                    (withdraw(next(c), a, 25), "MoneyWithdrawn", 125 + n)
                    for n, a in enumerate(accounts)
                ])  # fmt: skip
                assert third.health() == 200
            finally:
                await asyncio.to_thread(third.stop)


async def _start(broker: Broker, directory: Path) -> Worker:
    """A ready worker; tried again on a new web port if another process took its port.

    ``free_port`` only finds a port that is free *now*; other test sessions on the
    machine may bind it before the worker does.
    """
    directory.mkdir(exist_ok=True)
    for attempt in range(3):
        worker = Worker(broker, directory)
        before = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        try:
            await asyncio.to_thread(worker.start)
            return worker
        except RuntimeError:
            with worker.log_path.open("rb") as log:
                log.seek(before)
                lost_port = b"address already in use" in log.read()
            if not lost_port or attempt == 2:
                raise
    raise AssertionError("unreachable")


def assert_continues(events: list[Event], expected: list[tuple[str, int, int | None]]) -> None:
    """Events carry seqs 1..n with the expected balances.

    At-least-once: a worker killed after producing an event but before its state was
    written reprocesses the input and re-emits the *identical* event (same id, same seq,
    same content); readers dedupe by event id. Two different events with one seq, or a
    gap, would be a bug.
    """
    by_seq: dict[int, list[Event]] = {}
    for event in events:
        body = {k: v for k, v in event.items() if not k.startswith("_")}
        by_seq.setdefault(event["seq"], []).append(body)
    for seq, copies in by_seq.items():
        assert all(copy == copies[0] for copy in copies), (seq, copies)
    distinct = [copies[0] for _, copies in sorted(by_seq.items())]
    assert [(e["type"], e["seq"], e.get("balance")) for e in distinct] == expected
    assert_on_own_partitions(events)
    assert_ledger_clean(events)
