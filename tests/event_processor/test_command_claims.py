"""Bank-wide command ids through the real agent (Faust's harness, memory tables).

The claims and their answers are delivered by hand here, in the order each story
chooses, and the state is checked after every step: what is decided, what waits in the
account's queue, what the ``command-claims`` table holds.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from banking_app.domain import event_from_dict
from banking_app.domain import events as ev
from banking_app.domain.ledger import Ledger
from banking_app.event_processor.agent import Handled
from banking_app.event_processor.idempotency import AccountRow
from banking_app.event_processor.tables import (
    accounts_table,
    command_claims_table,
    command_offsets_table,
)
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import commands_topic, dead_letters_topic, partition_for
from support.agent_harness import (
    balance,
    bundle,
    claim_bundles,
    create_account,
    credit,
    deliver_claims,
    events,
    last_outcomes,
    open_accounts,
    send,
    send_bundle,
)


def partition_of(key: str) -> int:
    return partition_for(key.encode(), 8)


def id_on(partition: int, prefix: str, avoid: tuple[int, ...] = ()) -> str:
    """A command id that is claimed on ``partition`` (or, with ``partition=-1``, on
    none of ``avoid``)."""
    for number in range(10_000):
        command_id = f"{prefix}-{number}"
        on = partition_of(command_id)
        if on == partition or (partition == -1 and on not in avoid):
            return command_id
    raise AssertionError("no such id")


def deposit(command_id: str, account_id: str, amount: int) -> dict[str, Any]:
    return {"type": "DEPOSIT", "command_id": command_id, "account_id": account_id, "amount": amount}


def withdraw(command_id: str, account_id: str, amount: int) -> dict[str, Any]:
    return {
        "type": "WITHDRAW",
        "command_id": command_id,
        "account_id": account_id,
        "amount": amount,
    }


def row(account_id: str) -> AccountRow:
    return AccountRow.from_dict(get_json(accounts_table, account_id))


async def put(agent: Any, command: dict[str, Any]) -> Handled:
    """Put a command on its account's partition; claims are left undelivered."""
    key = command["account_id"].encode()
    await agent.put(orjson.dumps(command), key=key, partition=partition_of(command["account_id"]))
    [handled] = last_outcomes(agent)
    return handled  # type: ignore[no-any-return]


def legs_of(record: Any) -> list[dict[str, Any]]:
    return [item["command"] for item in orjson.loads(record.value)]


async def deliver(agent: Any, record: Any) -> list[Handled]:
    return await send_bundle(agent, record.value, record.partition)


def two_accounts_on_two_partitions() -> tuple[str, str]:
    return "acc-a", next(
        f"acc-{n}" for n in range(100) if partition_of(f"acc-{n}") != partition_of("acc-a")
    )


async def test_an_id_reused_for_another_account_is_refused_and_the_first_use_stands(
    harness: Any,
) -> None:
    a, b = two_accounts_on_two_partitions()
    await open_accounts(harness, a, b)
    reused = id_on(-1, "dep", avoid=(partition_of(a), partition_of(b)))

    # The first use: queued, its claim sent to the id's partition.
    assert await put(harness, deposit(reused, a, 10)) is Handled.QUEUED
    assert balance(a) == 0 and len(row(a).pending) == 1
    [claim] = claim_bundles(harness)
    assert claim.partition == partition_of(reused)
    [leg] = legs_of(claim)
    assert (leg["type"], leg["command_id"], leg["account_id"]) == ("CLAIM_COMMAND_ID", reused, a)
    assert "seal" in leg

    # The claim is recorded, and answered back to the account's partition.
    assert await deliver(harness, claim) == [Handled.CLAIM]
    stored = get_json(command_claims_table, reused)
    assert (stored["account_id"], stored["position"]) == (a, [leg["offset"], leg["index"]])
    [answer] = claim_bundles(harness)
    assert answer.partition == partition_of(a)
    assert legs_of(answer)[0]["answer"] == "CLAIMED"
    assert await deliver(harness, answer) == [Handled.ANSWER]
    assert last_outcomes(harness).decided == {(partition_of(a), leg["offset"], 0): Handled.APPLIED}
    assert balance(a) == 10 and row(a).pending == ()

    # The same id for account b, on another partition: refused, and a moves nothing.
    assert await send(harness, deposit(reused, b, 10)) is Handled.REUSED
    assert (balance(a), balance(b)) == (10, 0)
    assert get_json(command_claims_table, reused) == stored  # the first claim stands
    first, refused = [e for e in events(harness) if e["command_id"] == reused]
    assert (first["type"], first["account_id"]) == ("MoneyDeposited", a)
    assert (refused["type"], refused["reason"], refused["account_id"]) == (
        "CommandRejected",
        "COMMAND_ID_REUSED",
        b,
    )
    assert refused["event_id"] != first["event_id"]
    assert ev.outcome_key(event_from_dict(refused)) != reused

    # A copy of the first use is a duplicate; another amount on a is refused too.
    assert await send(harness, deposit(reused, a, 10)) is Handled.DUPLICATE
    assert await send(harness, deposit(reused, a, 11)) is Handled.REUSED
    assert (balance(a), balance(b)) == (10, 0)
    ledger = Ledger()
    for event in events(harness):
        ledger.apply(event_from_dict(event))
    assert ledger.check() == []


async def test_an_accounts_commands_are_decided_in_partition_order_whatever_the_answers(
    harness: Any,
) -> None:
    """A deposit then a withdrawal of it: answered the other way round, the withdrawal
    still waits for the deposit, so it is not refused for want of funds."""
    await open_accounts(harness, "ivy")
    own = partition_of("ivy")
    first = id_on(-1, "in", avoid=(own,))
    second = id_on(-1, "out", avoid=(own, partition_of(first)))
    assert await put(harness, deposit(first, "ivy", 50)) is Handled.QUEUED
    assert await put(harness, withdraw(second, "ivy", 50)) is Handled.QUEUED
    claims = {legs_of(r)[0]["command_id"]: r for r in claim_bundles(harness)}
    assert set(claims) == {first, second}

    # The withdrawal's claim and answer first: it is ready, but waits behind the deposit.
    await deliver(harness, claims[second])
    [answer_second] = claim_bundles(harness)
    assert await deliver(harness, answer_second) == [Handled.ANSWER]
    assert last_outcomes(harness).decided == {}
    assert [p.answer for p in row("ivy").pending] == [None, "CLAIMED"]
    assert balance("ivy") == 0

    # The deposit's: both leave, in order.
    await deliver(harness, claims[first])
    [answer_first] = claim_bundles(harness)
    await deliver(harness, answer_first)
    assert sorted(last_outcomes(harness).decided.values()) == [Handled.APPLIED] * 2
    assert balance("ivy") == 0 and row("ivy").pending == ()
    assert [e["type"] for e in events(harness)][-2:] == ["MoneyDeposited", "MoneyWithdrawn"]

    # The answers again (a redelivery): nothing waits for them, nothing changes.
    assert await deliver(harness, answer_first) == [Handled.DUPLICATE]
    assert await deliver(harness, answer_second) == [Handled.DUPLICATE]
    # A claim again gets the answer it got before.
    assert await deliver(harness, claims[first]) == [Handled.CLAIM]
    [again] = claim_bundles(harness)
    assert legs_of(again) == legs_of(answer_first)


async def test_a_saga_leg_waits_behind_a_pending_command_of_its_account(harness: Any) -> None:
    """A credit sent to an account whose creation is still being claimed is decided
    after it, as it sits after it on the partition: credited, not refunded."""
    own = partition_of("jo")
    opened = id_on(-1, "open", avoid=(own,))
    assert await put(harness, create_account(opened, "jo", "Jo")) is Handled.QUEUED
    assert await send_bundle(harness, bundle(credit("t9", "jo", 6)), own) == [Handled.QUEUED]
    assert get_json(accounts_table, "jo")["account"] is None
    await deliver_claims(harness)
    assert balance("jo") == 6
    assert [e["type"] for e in events(harness)] == ["AccountCreated", "TransferCredited"]


async def test_an_id_claimed_on_its_accounts_own_partition_needs_no_hop(harness: Any) -> None:
    await open_accounts(harness, "kay")
    own = partition_of("kay")
    local = id_on(own, "here")
    assert await put(harness, deposit(local, "kay", 4)) is Handled.APPLIED
    assert claim_bundles(harness) == []
    assert balance("kay") == 4
    assert get_json(command_claims_table, local)["account_id"] == "kay"
    # The same id on another account is still refused, through its claim.
    other = next(f"kay-{n}" for n in range(100) if partition_of(f"kay-{n}") != own)
    await open_accounts(harness, other)
    assert await send(harness, deposit(local, other, 4)) is Handled.REUSED
    assert balance(other) == 0


async def test_forged_claims_and_answers_are_dead_lettered_and_move_nothing(harness: Any) -> None:
    await open_accounts(harness, "lee")
    own = partition_of("lee")
    pending_id = id_on(-1, "wait", avoid=(own,))
    assert await put(harness, deposit(pending_id, "lee", 9)) is Handled.QUEUED
    [claim] = claim_bundles(harness)
    [leg] = legs_of(claim)
    forged_answer = {**leg, "type": "COMMAND_ID_ANSWER", "answer": "CLAIMED", "seal": "x" * 22}
    assert await send_bundle(harness, bundle(forged_answer), own) == [Handled.DEAD_LETTERED]
    forged_claim = {**leg, "fingerprint": "0" * 32}
    del forged_claim["seal"]
    assert await send(harness, forged_claim, key=pending_id) is Handled.DEAD_LETTERED
    assert [orjson.loads(r.value)["reason"] for r in harness.outbox.on(dead_letters_topic)] == [
        "FORGED_LEG",
        "FORGED_LEG",
    ]
    assert balance("lee") == 0 and len(row("lee").pending) == 1
    assert get_json(command_claims_table, pending_id) is None
    await deliver(harness, claim)
    await deliver_claims(harness)
    assert balance("lee") == 9


ACCOUNTS = ("ma", "mb", "mc")
uses = st.lists(
    st.tuples(
        st.sampled_from([f"id{n}" for n in range(4)]),
        st.sampled_from(ACCOUNTS),
        st.sampled_from([1, 2]),
    ),
    min_size=1,
    max_size=10,
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(uses=uses, seed=st.integers(0, 2**32), copies=st.integers(0, 3))
async def test_every_use_of_an_id_has_one_outcome_and_one_is_applied(
    harness: Any, uses: list[tuple[str, str, int]], seed: int, copies: int
) -> None:
    """Deposits under a few ids over accounts on several partitions, their claims and
    answers delivered in any order and some of them twice: each id moves money once,
    for its first claimant; every other use is a duplicate (same content) or refused;
    the books balance and no event id carries two contents."""
    order = random.Random(seed)  # not Hypothesis's: how many bundles there are varies
    run = getattr(harness, "run", 0) + 1
    harness.run = run
    accounts = [f"{name}{run}" for name in ACCOUNTS]
    await open_accounts(harness, *accounts)
    before = len(events(harness))
    places = []
    for command_id, account, amount in uses:
        account_id = f"{account}{run}"
        command = deposit(f"{command_id}-{run}", account_id, amount)
        await harness.put(
            orjson.dumps(command), key=account_id.encode(), partition=partition_of(account_id)
        )
        places.append(command)
    # Deliver the claim legs in a shuffled order, a few of them twice.
    while bundles := claim_bundles(harness):
        bundles += [order.choice(bundles) for _ in range(copies)]
        order.shuffle(bundles)
        for record in bundles:
            await deliver(harness, record)
    new = [event_from_dict(e) for e in events(harness)[before:]]
    deposits = [e for e in new if e.type == "MoneyDeposited"]
    refused = [e for e in new if e.type == "CommandRejected"]
    assert all(e.reason == "COMMAND_ID_REUSED" for e in refused)
    # Each id used moves money once, whichever use was claimed first.
    assert Counter(e.command_id for e in deposits) == Counter(
        {f"{command_id}-{run}": 1 for command_id, _, _ in uses}
    )
    # Each use is applied, a duplicate of the applied one, or refused: one outcome each.
    applied = {(e.command_id, e.account_id, e.amount) for e in deposits}
    for command in places:
        key = (command["command_id"], command["account_id"], command["amount"])
        if key not in applied:
            assert any(e.command == command for e in refused), f"{command} has no outcome"
    assert len({e.event_id for e in new}) == len(new)
    for account in accounts:
        assert row(account).pending == ()
    ledger = Ledger()
    for event in events(harness):
        ledger.apply(event_from_dict(event))
    assert ledger.check() == []
    assert not [r for r in harness.outbox.on(commands_topic)]  # no saga leg was sent


TABLES_KEPT = (accounts_table, command_offsets_table, command_claims_table)


def snapshot() -> list[dict[bytes, bytes]]:
    return [dict(table.data.data) for table in TABLES_KEPT]


def restore(saved: list[dict[bytes, bytes]]) -> None:
    for table, data in zip(TABLES_KEPT, saved, strict=True):
        table.data.data.clear()
        table.data.data.update(data)


async def put_with(agent: Any, value: bytes, key: bytes, partition: int, crash: str) -> None:
    """Put a record, then, by ``crash``: ``"state"`` the worker died after publishing and
    before its tables were written (they are put back as they were, and the record comes
    again at the same offset); ``"commit"`` it died after its tables were written and
    before the offset was committed (the record comes again); ``""`` neither."""
    saved = snapshot()
    offset = agent.sent_offset
    stamp = 1_700_000_000.0 + offset  # a record keeps its timestamp when read again
    await agent.put(value, key=key, partition=partition, timestamp=stamp)
    if not crash:
        return
    if crash == "state":
        restore(saved)
    after, agent.sent_offset = agent.sent_offset, offset
    await agent.put(value, key=key, partition=partition, timestamp=stamp)
    agent.sent_offset = after


crashes = st.sampled_from(["", "", "state", "commit"])
commands_sent = st.lists(
    st.tuples(
        st.sampled_from([f"k{n}" for n in range(3)]),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["DEPOSIT", "WITHDRAW"]),
        st.sampled_from([1, 2]),
        crashes,
    ),
    min_size=1,
    max_size=8,
)


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=commands_sent, seed=st.integers(0, 2**32), leg_crashes=st.lists(crashes, max_size=40))
async def test_every_command_has_one_outcome_when_workers_die_anywhere(
    harness: Any,
    sent: list[tuple[str, str, str, int, str]],
    seed: int,
    leg_crashes: list[str],
) -> None:
    """Commands and their claims, each input possibly handled twice: once by a worker
    that died before its state was written (its output published all the same), or
    that died before committing. Each use of an id still has exactly one outcome, each
    id moves money at most once, no event id carries two contents, the books balance,
    and nothing is left waiting."""
    order = random.Random(seed)
    run = getattr(harness, "crash_run", 0) + 1
    harness.crash_run = run
    accounts = [f"{name}x{run}" for name in ACCOUNTS]
    await open_accounts(harness, *accounts)
    before = len(events(harness))
    uses = []
    for command_id, account, kind, amount, crash in sent:
        account_id = f"{account}x{run}"
        command = {
            "type": kind,
            "command_id": f"{command_id}-{run}",
            "account_id": account_id,
            "amount": amount,
        }
        uses.append(command)
        key = account_id.encode()
        await put_with(harness, orjson.dumps(command), key, partition_of(account_id), crash)
    crash_at = iter(leg_crashes)
    while bundles := claim_bundles(harness):
        order.shuffle(bundles)
        for record in bundles:
            crash = next(crash_at, "")
            await put_with(harness, record.value, b"", record.partition, crash)
    new = [event_from_dict(e) for e in events(harness)[before:]]
    ledger = Ledger()
    for event in events(harness):
        ledger.apply(event_from_dict(event))
    assert ledger.check() == []  # one content per event id, one outcome per use
    by_id: dict[str, set[str]] = {}
    for event in new:
        if event.type != "CommandRejected" or event.reason != "COMMAND_ID_REUSED":
            by_id.setdefault(event.command_id, set()).add(event.account_id)
    assert all(len(owners) == 1 for owners in by_id.values())  # one use decided per id
    distinct = {orjson.dumps(u, option=orjson.OPT_SORT_KEYS): u for u in uses}
    for command in distinct.values():
        own = [e for e in new if e.command_id == command["command_id"]]
        decided = [
            e for e in own if e.account_id == command["account_id"] and e.type != "CommandRejected"
        ] + [e for e in own if e.type == "CommandRejected" and e.command == command]
        first = next(u for u in uses if u["command_id"] == command["command_id"])
        assert decided or first != command, f"{command} has no outcome"
    for account in accounts:
        assert row(account).pending == ()


# -- a malformed command's id is claimed too -----------------------------------------------


def refusals_of(agent: Any, command_id: str) -> list[dict[str, Any]]:
    return [e for e in events(agent) if e["command_id"] == command_id]


async def test_a_malformed_command_and_a_valid_one_under_one_id_have_one_outcome_each(
    harness: Any,
) -> None:
    """The first use of an id wins, whichever of the two it is; the other is refused
    COMMAND_ID_REUSED under an event id of its own. Every malformed input is
    dead-lettered where it came, and nothing moves money twice."""
    await open_accounts(harness, "mia", "ned")
    first, second, third = (id_on(-1, prefix) for prefix in ("mal", "val", "twice"))

    # A malformed command first: refused MALFORMED_COMMAND; then a valid deposit under
    # its id, on another account: refused COMMAND_ID_REUSED.
    letters = len(harness.outbox.on(dead_letters_topic))
    bad = deposit(first, "mia", 0) | {"amount": 2.5}
    assert await send(harness, bad) is Handled.DEAD_LETTERED
    assert len(harness.outbox.on(dead_letters_topic)) == letters + 1
    assert await send(harness, deposit(first, "ned", 40)) is Handled.REUSED
    mine = refusals_of(harness, first)
    assert [(e["reason"], e["account_id"]) for e in mine] == [
        ("MALFORMED_COMMAND", "mia"),
        ("COMMAND_ID_REUSED", "ned"),
    ]
    assert mine[0]["command"] == bad and mine[0]["command_type"] == "DEPOSIT"
    assert len({e["event_id"] for e in mine}) == 2
    assert (balance("mia"), balance("ned")) == (0, 0)

    # A valid deposit first: applied; a malformed command under its id after it: refused
    # COMMAND_ID_REUSED, and sent again, refused again (as a reused valid command is:
    # each use at its own position has its one outcome).
    assert await send(harness, deposit(second, "mia", 25)) is Handled.APPLIED
    worse = withdraw(second, "ned", 5) | {"amount": "5"}
    assert await send(harness, worse) is Handled.DEAD_LETTERED
    assert await send(harness, worse) is Handled.DEAD_LETTERED
    mine = refusals_of(harness, second)
    assert [(e["type"], e.get("reason")) for e in mine] == [
        ("MoneyDeposited", None),
        ("CommandRejected", "COMMAND_ID_REUSED"),
        ("CommandRejected", "COMMAND_ID_REUSED"),
    ]
    assert len({e["event_id"] for e in mine}) == 3
    assert (balance("mia"), balance("ned")) == (25, 0)
    assert get_json(command_claims_table, second)["account_id"] == "mia"

    # A malformed command as its id's first use, sent twice: refused once; the copy has
    # the first claim's content and is a duplicate.
    again = deposit(third, "ned", 0) | {"amount": [1]}
    assert await send(harness, again) is Handled.DEAD_LETTERED
    assert await send(harness, again) is Handled.DEAD_LETTERED
    assert [e["reason"] for e in refusals_of(harness, third)] == ["MALFORMED_COMMAND"]


async def test_a_malformed_command_with_no_account_gets_a_dead_letter_only(harness: Any) -> None:
    """With no account to refuse it to, its dead letter is its outcome: no event, and
    no claim of its id, so the id's valid use is still the first."""
    command_id = id_on(-1, "noacct")
    bad = {"type": "DEPOSIT", "command_id": command_id, "account_id": 12345, "amount": 1}
    assert await send(harness, orjson.dumps(bad), key="ola") is Handled.DEAD_LETTERED
    assert refusals_of(harness, command_id) == []
    assert get_json(command_claims_table, command_id) is None
    await open_accounts(harness, "ola")
    assert await send(harness, deposit(command_id, "ola", 10)) is Handled.APPLIED
    assert balance("ola") == 10


async def test_a_forged_refusal_claim_is_dead_lettered(harness: Any) -> None:
    """A claim leg carrying a refusal is the bank's own: unsealed, it moves nothing."""
    forged = {
        "type": "CLAIM_COMMAND_ID",
        "command_id": "forged-1",
        "account_id": "mia",
        "fingerprint": "0" * 32,
        "offset": 0,
        "index": 0,
        "refusal": "made up",
    }
    assert await send(harness, orjson.dumps(forged), key="forged-1") is Handled.DEAD_LETTERED
    assert refusals_of(harness, "forged-1") == []
    assert get_json(command_claims_table, "forged-1") is None


async def test_a_command_stamped_minus_one_is_claimed_and_decided(harness: Any) -> None:
    """Kafka takes -1 as a record's timestamp ("none"); the claim and its answer keep the
    command's, so their envelopes must take it too, or the account's queue waits for an
    answer for ever."""
    await open_accounts(harness, "pia")
    command_id = id_on(-1, "minus", avoid=(partition_of("pia"),))
    own = partition_of("pia")
    await harness.put(
        orjson.dumps(deposit(command_id, "pia", 30)), key=b"pia", partition=own, timestamp=-0.001
    )
    [bundle_record] = claim_bundles(harness)
    assert [item["timestamp"] for item in orjson.loads(bundle_record.value)] == [-1]
    await deliver(harness, bundle_record)  # the claim; its answer comes back in the same way
    decided = await deliver_claims(harness)
    assert list(decided.values()) == [Handled.APPLIED]
    [deposited] = [e for e in events(harness) if e["command_id"] == command_id]
    assert deposited["occurred_at"] == "1969-12-31T23:59:59.999Z"
    assert balance("pia") == 30
