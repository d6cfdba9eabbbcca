"""The HTTP API end to end: a real broker, a real worker subprocess, requests over HTTP.

Most tests use the session worker (shared with other modules), so each works on account
ids and Idempotency-Keys of its own. After every rejected or invalid request the account
is checked to be unchanged: a later "marker" command is sent with ``?wait=true``, and
since one account's commands are applied in order, its result proves that nothing was
applied in between.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_client import (
    HTTP_TIMEOUT,
    PROBLEM_FIELDS,
    Api,
    Reply,
    assert_problem,
    eventually,
    id_on_partition,
    key,
    new_id,
    part,
    raw_request,
    running_workers,
    view_state,
)

from banking_app.operations.allocator import library
from bench.memory import parse as parse_memory
from support.cluster import Broker

pytestmark = pytest.mark.kafka

Event = dict[str, Any]


def shape(event: Event) -> tuple[Any, ...]:
    """What an event did: type, account, seq, amount, balance (no ids, no timestamps)."""
    return (
        event["type"],
        event["account_id"],
        event.get("seq"),
        event.get("amount"),
        event.get("balance"),
    )


async def expect_view(
    api: Api, account_id: str, balance: int, version: int, status: str = "OPEN", in_flight: int = 0
) -> dict[str, Any]:
    view = await api.account(account_id)
    assert view_state(view) == (balance, version, status, in_flight), view
    return view


async def expect_outcome(
    api: Api, command_id: str, status: str, reason: str | None = None
) -> Event:
    reply = await api.get(f"/commands/{command_id}")
    assert reply.status == 200, reply
    outcome = reply.body
    assert outcome["command_id"] == command_id
    assert outcome["status"] == status, outcome
    assert outcome.get("reason") == reason, outcome
    return outcome  # type: ignore[no-any-return]


def assert_accepted(reply: Reply, command_id: str) -> list[Event]:
    assert reply.status == 200, reply
    assert reply.content_type == "application/json", reply
    assert reply.headers["Location"] == f"/commands/{command_id}"
    body = reply.body
    assert body["command_id"] == command_id, body
    assert body["status"] == "accepted", body
    assert all(event["command_id"] == command_id for event in body["events"]), body
    return body["events"]  # type: ignore[no-any-return]


def assert_rejected(reply: Reply, command_id: str, reason: str) -> list[Event]:
    problem = assert_problem(reply, 422, reason)
    assert problem["command_id"] == command_id, problem
    assert reason in problem["detail"], problem
    return problem["events"]  # type: ignore[no-any-return]


async def marker(api: Api, account_id: str, before: tuple[int, int], amount: int = 1) -> None:
    """Deposit ``amount`` and check the account moved from ``before`` (balance, version)
    by exactly that one deposit: nothing else was applied in between."""
    balance, version = before
    await api.deposit(account_id, amount)
    view = await api.account(account_id)
    assert (view["balance"], view["version"]) == (balance + amount, version + 1), view
    newest = (await api.history(account_id, limit=1))["items"]
    assert [(i["seq"], i["type"], i["amount"]) for i in newest] == [
        (version + 1, "MoneyDeposited", amount)
    ]


# ------------------------------------------------------------------------- lifecycle


async def test_lifecycle_of_two_accounts(api: Api) -> None:
    alice, bob = new_id("alice"), new_id("bob")

    # Open both.
    k = key()
    reply = await api.post(
        "/accounts", {"account_id": alice, "owner": "Alice", "currency": "EUR"}, idempotency_key=k
    )
    events = assert_accepted(reply, k)
    assert reply.body["account_id"] == alice
    assert [shape(e) for e in events] == [("AccountCreated", alice, 1, None, None)]
    assert events[0]["owner"] == "Alice" and events[0]["currency"] == "EUR"
    view = await expect_view(api, alice, 0, 1)
    assert {
        name: view[name] for name in ("account_id", "owner", "currency", "overdraft_limit")
    } == {
        "account_id": alice,
        "owner": "Alice",
        "currency": "EUR",
        "overdraft_limit": 0,
    }
    assert set(view) == {
        "account_id", "owner", "currency", "balance", "overdraft_limit", "in_flight",
        "status", "version", "created_at", "updated_at", "daily_withdrawal_limit",
        "daily_transfer_limit",
    }  # fmt: skip
    await expect_outcome(api, k, "accepted")

    k = key()
    reply = await api.post(
        "/accounts",
        {"account_id": bob, "owner": "Bob", "currency": "EUR", "overdraft_limit": 500},
        idempotency_key=k,
    )
    assert [shape(e) for e in assert_accepted(reply, k)] == [("AccountCreated", bob, 1, None, None)]
    assert (await expect_view(api, bob, 0, 1))["overdraft_limit"] == 500
    await expect_view(api, alice, 0, 1)

    # Deposit.
    k = key()
    reply = await api.post(f"/accounts/{alice}/deposits", {"amount": 10_000}, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(reply, k)] == [
        ("MoneyDeposited", alice, 2, 10_000, 10_000)
    ]
    await expect_view(api, alice, 10_000, 2)
    await expect_outcome(api, k, "accepted")

    # Withdraw.
    k = key()
    reply = await api.post(f"/accounts/{alice}/withdrawals", {"amount": 2_500}, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(reply, k)] == [
        ("MoneyWithdrawn", alice, 3, 2_500, 7_500)
    ]
    await expect_view(api, alice, 7_500, 3)

    # Transfer between them.
    k = key()
    reply = await api.post(
        "/transfers",
        {"from_account_id": alice, "to_account_id": bob, "amount": 7_000},
        idempotency_key=k,
    )
    events = assert_accepted(reply, k)
    assert [shape(e) for e in events[:2]] == [
        ("TransferDebited", alice, 4, 7_000, 500),
        ("TransferCredited", bob, 2, 7_000, 7_000),
    ]
    # The answer waits for the settle leg, so nothing is in flight any more.
    assert [e["type"] for e in events[2:]] == ["TransferSettled"]
    assert events[0]["to_account_id"] == bob and events[1]["from_account_id"] == alice
    view = await api.account(alice)
    assert (view["balance"], view["version"], view["status"]) == (500, 4, "OPEN")
    assert view["in_flight"] == 0
    await expect_view(api, alice, 500, 4)
    await expect_view(api, bob, 7_000, 2)
    outcome = await expect_outcome(api, k, "accepted")
    assert [e["type"] for e in outcome["events"]][:2] == ["TransferDebited", "TransferCredited"]

    # A transfer to an unknown account fails, and the source gets its money back.
    nobody = new_id("nobody")
    k = key()
    reply = await api.post(
        "/transfers",
        {"from_account_id": alice, "to_account_id": nobody, "amount": 200},
        idempotency_key=k,
    )
    events = assert_rejected(reply, k, "ACCOUNT_NOT_FOUND")
    assert [shape(e) for e in events] == [
        ("TransferDebited", alice, 5, 200, 300),
        ("TransferRefunded", alice, 6, 200, 500),
    ]
    assert events[1]["reason"] == "ACCOUNT_NOT_FOUND"
    await expect_view(api, alice, 500, 6)  # refunded, nothing in flight
    await expect_view(api, bob, 7_000, 2)
    assert (await api.get(f"/accounts/{nobody}")).status == 404
    await expect_outcome(api, k, "rejected", "ACCOUNT_NOT_FOUND")

    # Bob uses his overdraft.
    k = key()
    reply = await api.post(f"/accounts/{bob}/withdrawals", {"amount": 7_400}, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(reply, k)] == [
        ("MoneyWithdrawn", bob, 3, 7_400, -400)
    ]
    await expect_view(api, bob, -400, 3)

    # Empty Alice's account, then close it.
    k = key()
    reply = await api.post(f"/accounts/{alice}/withdrawals", {"amount": 500}, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(reply, k)] == [("MoneyWithdrawn", alice, 7, 500, 0)]
    await expect_view(api, alice, 0, 7)
    k = key()
    reply = await api.post(f"/accounts/{alice}/close", idempotency_key=k)
    assert [shape(e) for e in assert_accepted(reply, k)] == [
        ("AccountClosed", alice, 8, None, None)
    ]
    await expect_view(api, alice, 0, 8, "CLOSED")

    # A closed account takes no deposit, and no transfer either (Bob is refunded).
    k = key()
    reply = await api.post(f"/accounts/{alice}/deposits", {"amount": 100}, idempotency_key=k)
    events = assert_rejected(reply, k, "ACCOUNT_CLOSED")
    assert [shape(e) for e in events] == [("CommandRejected", alice, None, None, None)]
    await expect_view(api, alice, 0, 8, "CLOSED")
    await expect_outcome(api, k, "rejected", "ACCOUNT_CLOSED")

    k = key()
    reply = await api.post(
        "/transfers",
        {"from_account_id": bob, "to_account_id": alice, "amount": 100},
        idempotency_key=k,
    )
    events = assert_rejected(reply, k, "ACCOUNT_CLOSED")
    assert [shape(e) for e in events] == [
        ("TransferDebited", bob, 4, 100, -500),
        ("TransferRefunded", bob, 5, 100, -400),
    ]
    await expect_view(api, bob, -400, 5)
    await expect_view(api, alice, 0, 8, "CLOSED")

    # The whole story, newest first.
    items = (await api.history(alice))["items"]
    assert [(i["seq"], i["type"], i["amount"], i["balance"]) for i in items] == [
        (8, "AccountClosed", 0, 0),
        (7, "MoneyWithdrawn", 500, 0),
        (6, "TransferRefunded", 200, 500),
        (5, "TransferDebited", 200, 300),
        (4, "TransferDebited", 7_000, 500),
        (3, "MoneyWithdrawn", 2_500, 7_500),
        (2, "MoneyDeposited", 10_000, 10_000),
        (1, "AccountCreated", 0, 0),
    ]
    assert [i.get("counterparty_account_id") for i in items] == [
        None, None, nobody, nobody, bob, None, None, None,
    ]  # fmt: skip
    assert items[2]["reason"] == "ACCOUNT_NOT_FOUND"
    items = (await api.history(bob))["items"]
    assert [
        (i["seq"], i["type"], i["balance"], i.get("counterparty_account_id")) for i in items
    ] == [
        (5, "TransferRefunded", -400, alice),
        (4, "TransferDebited", -500, alice),
        (3, "MoneyWithdrawn", -400, None),
        (2, "TransferCredited", 7_000, alice),
        (1, "AccountCreated", 0, None),
    ]


# ------------------------------------------------------------------ read your writes


async def test_a_get_right_after_a_waiting_post_reads_the_write(api: Api) -> None:
    """No retry loop: the GET right after the 200 must already show the new state."""
    first = await api.open(currency="GBP")
    second = await api.open(currency="GBP")
    balance = 0
    for n in range(1, 6):
        k = key()
        reply = await api.post(
            f"/accounts/{first}/deposits", {"amount": n * 100}, idempotency_key=k
        )
        assert reply.status == 200, reply
        balance += n * 100
        view = await api.account(first)
        assert (view["balance"], view["version"]) == (balance, n + 1), view
        history = await api.history(first, limit=1)
        assert history["items"][0]["seq"] == n + 1 and history["items"][0]["command_id"] == k
        assert (await api.get(f"/commands/{k}")).body["status"] == "accepted"

    k = key()
    reply = await api.post(f"/accounts/{first}/withdrawals", {"amount": 250}, idempotency_key=k)
    assert reply.status == 200, reply
    view = await api.account(first)
    assert (view["balance"], view["version"]) == (balance - 250, 7), view
    balance -= 250

    for n in range(1, 4):
        reply = await api.post(
            "/transfers",
            {"from_account_id": first, "to_account_id": second, "amount": 100},
            idempotency_key=key(),
        )
        assert reply.status == 200, reply
        source, destination = await api.account(first), await api.account(second)
        assert (source["balance"], source["version"]) == (balance - 100 * n, 7 + n), source
        assert (destination["balance"], destination["version"]) == (100 * n, 1 + n), destination


#: Transfers at once: enough that the commands agent has a backlog when settle legs come.
CONCURRENT_TRANSFERS = 40
ROUNDS = 3


async def test_a_transfer_is_settled_in_the_source_view_when_its_wait_returns(
    api: Api,
) -> None:
    """Read-your-writes for ``in_flight``: the settle leg goes back to the source's
    partition behind whatever the commands agent has queued; the answer does not wait
    for it. Under load (here: many transfers at once) the gap shows every time."""

    async def transfer_and_look() -> dict[str, Any]:
        source, destination = await asyncio.gather(api.open(deposit=1_000), api.open())
        reply = await api.post(
            "/transfers",
            {"from_account_id": source, "to_account_id": destination, "amount": 300},
            idempotency_key=key(),
        )
        assert reply.status == 200, reply
        view = await api.account(source)
        assert (view["balance"], view["version"]) == (700, 3), view
        return view

    for _ in range(ROUNDS):  # (with the gap, the first round already shows it)
        views = await asyncio.gather(*(transfer_and_look() for _ in range(CONCURRENT_TRANSFERS)))
        in_flight = [view["in_flight"] for view in views]
        assert in_flight == [0] * CONCURRENT_TRANSFERS


# ------------------------------------------------------------------------ pagination


async def test_history_is_paged_newest_first(api: Api) -> None:
    account = await api.open()
    keys = [key() for _ in range(23)]
    # 22 deposits without waiting (each is on the broker, in order, when its 202 comes),
    # then the 23rd with ?wait=true: once it shows, all before it show.
    for n, k in enumerate(keys[:-1], start=1):
        reply = await api.post(
            f"/accounts/{account}/deposits", {"amount": n}, idempotency_key=k, wait=False
        )
        assert reply.status == 202, reply
        assert reply.body == {"command_id": k, "status": "pending"}
    await api.deposit(account, 23, command_id=keys[-1])
    await expect_view(api, account, 23 * 24 // 2, 24)

    def expected(seq: int) -> tuple[Any, ...]:
        if seq == 1:
            return (1, "AccountCreated", 0, 0)
        n = seq - 1
        return (seq, "MoneyDeposited", n, n * (n + 1) // 2, keys[n - 1])

    def lines(page: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (i["seq"], i["type"], i["amount"], i["balance"], i["command_id"])[
                : 4 if i["seq"] == 1 else 5
            ]
            for i in page["items"]
        ]

    pages, before = [], None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if before is not None:
            params["before_seq"] = before
        page = await api.history(account, **params)
        assert page["account_id"] == account
        pages.append(page)
        before = page["next_before_seq"]
        if before is None:
            break
        assert len(pages) < 5, pages
    assert [len(p["items"]) for p in pages] == [10, 10, 4]
    assert [p["next_before_seq"] for p in pages] == [15, 5, None]
    assert lines(pages[0]) == [expected(seq) for seq in range(24, 14, -1)]
    assert lines(pages[1]) == [expected(seq) for seq in range(14, 4, -1)]
    assert lines(pages[2]) == [expected(seq) for seq in range(4, 0, -1)]
    for page in pages:
        assert all(item["occurred_at"].endswith("Z") for item in page["items"])
        assert all("counterparty_account_id" not in item for item in page["items"])

    # The default page holds it all; exact boundaries end the chain.
    everything = await api.history(account)
    assert [i["seq"] for i in everything["items"]] == list(range(24, 0, -1))
    assert everything["next_before_seq"] is None
    assert (await api.history(account, limit=24))["next_before_seq"] is None
    page = await api.history(account, limit=23)
    assert (len(page["items"]), page["next_before_seq"]) == (23, 2)
    page = await api.history(account, limit=23, before_seq=2)
    assert ([i["seq"] for i in page["items"]], page["next_before_seq"]) == ([1], None)
    page = await api.history(account, before_seq=1)
    assert (page["items"], page["next_before_seq"]) == ([], None)
    page = await api.history(account, limit=500, before_seq=2**53)
    assert len(page["items"]) == 24


# ----------------------------------------------------------------------- idempotency


async def test_the_same_key_twice_is_applied_once_with_the_same_outcome(api: Api) -> None:
    account = await api.open(deposit=1_000)
    k = key()
    path = f"/accounts/{account}/deposits"
    first = await api.post(path, {"amount": 250}, idempotency_key=k)
    second = await api.post(path, {"amount": 250}, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(first, k)] == [
        ("MoneyDeposited", account, 3, 250, 1_250)
    ]
    assert second.body == first.body
    await expect_view(api, account, 1_250, 3)
    # Once more without waiting: the outcome is known, so it answers it at once (nothing
    # is sent again), and the deposit is still counted once.
    third = await api.post(path, {"amount": 250}, idempotency_key=k, wait=False)
    assert (third.status, third.body) == (200, first.body)
    await marker(api, account, (1_250, 3))
    outcome = await expect_outcome(api, k, "accepted")
    assert outcome["events"] == first.body["events"]

    # A rejected command answers the same rejection again, and changes nothing.
    k = key()
    path = f"/accounts/{account}/withdrawals"
    first = await api.post(path, {"amount": 5_000}, idempotency_key=k)
    second = await api.post(path, {"amount": 5_000}, idempotency_key=k)
    assert_rejected(first, k, "INSUFFICIENT_FUNDS")
    assert second.body == first.body and second.status == 422
    await marker(api, account, (1_251, 4))


async def test_the_same_key_first_without_then_with_wait(api: Api) -> None:
    account = await api.open(deposit=100)
    k = key()
    transfer_to = await api.open()
    body = {"from_account_id": account, "to_account_id": transfer_to, "amount": 60}
    pending = await api.post("/transfers", body, idempotency_key=k, wait=False)
    assert pending.status == 202, pending
    assert pending.body == {"command_id": k, "status": "pending"}
    assert pending.headers["Location"] == f"/commands/{k}"
    waited = await api.post("/transfers", body, idempotency_key=k)
    events = assert_accepted(waited, k)
    assert [shape(e) for e in events[:2]] == [
        ("TransferDebited", account, 3, 60, 40),
        ("TransferCredited", transfer_to, 2, 60, 60),
    ]
    again = await api.post("/transfers", body, idempotency_key=k)
    assert [shape(e) for e in assert_accepted(again, k)[:2]] == [shape(e) for e in events[:2]]
    # Counted once on both sides.
    await expect_view(api, transfer_to, 60, 2)
    await eventually(lambda: api.account(account), lambda v: v["in_flight"] == 0, what="settled")
    await marker(api, account, (40, 3))
    await marker(api, transfer_to, (60, 2))


async def test_open_without_an_account_id_names_the_same_account_for_the_same_key(
    api: Api,
) -> None:
    k = key()
    body = {"owner": "No Id", "currency": "CHF"}
    first = await api.post("/accounts", body, idempotency_key=k)
    second = await api.post("/accounts", body, idempotency_key=k)
    events = assert_accepted(first, k)
    account = first.body["account_id"]
    assert events[0]["account_id"] == account and events[0]["seq"] == 1
    assert second.body == first.body
    await expect_view(api, account, 0, 1)
    # Not waiting: the known outcome, naming the same account, at once.
    third = await api.post("/accounts", body, idempotency_key=k, wait=False)
    assert (third.status, third.body) == (200, first.body)
    await marker(api, account, (0, 1))
    # Without a key, or with another key, another account.
    other = await api.post("/accounts", body, idempotency_key=key())
    assert other.status == 200 and other.body["account_id"] != account
    unkeyed = await api.post("/accounts", body)
    assert unkeyed.status == 200
    assert unkeyed.body["account_id"] not in (account, other.body["account_id"])
    assert unkeyed.body["command_id"] not in (k, other.body["command_id"])


async def test_a_key_reused_on_another_account_moves_no_money(api: Api) -> None:
    first = await api.open()
    second = await api.open(id_on_partition((part(first) + 3) % 8))
    k = key()
    reply = await api.post(f"/accounts/{first}/deposits", {"amount": 5}, idempotency_key=k)
    assert_accepted(reply, k)
    reused = await api.post(f"/accounts/{second}/deposits", {"amount": 9}, idempotency_key=k)
    # Whatever the answer (the first outcome, or a refusal), the key was spent on `first`.
    assert reused.status in (200, 409, 422), reused
    await expect_view(api, first, 5, 2)
    await marker(api, second, (0, 1))


# ------------------------------------------------------------------------------- 4xx

DEPOSITS = "/accounts/{a}/deposits"
FIVE = {"amount": 5}


def case(name: str, method: str, path: str, **kwargs: Any) -> Any:
    """One invalid request: ``{a}`` in it is a funded account, ``{new}`` an unused id."""
    return pytest.param(method, path, kwargs, id=name)


def deposit_with(name: str, **kwargs: Any) -> Any:
    return case(name, "POST", DEPOSITS, **kwargs)


def open_with(name: str, **body: Any) -> Any:
    return case(name, "POST", "/accounts", json={"owner": "O", "currency": "EUR", **body})


def open_keyed(name: str, idempotency_key: str, **body: Any) -> Any:
    """A valid account opening under an invalid Idempotency-Key."""
    json = {"owner": "O", "currency": "EUR", **body}
    return case(name, "POST", "/accounts", json=json, idempotency_key=idempotency_key)


def transfer_with(name: str, **body: Any) -> Any:
    return case(name, "POST", "/transfers", json=body)


def history_with(name: str, **params: str) -> Any:
    return case(name, "GET", "/accounts/{a}/transactions", params=params)


BAD_REQUESTS = [
    deposit_with("malformed JSON", data=b'{"amount": 5'),
    deposit_with("not JSON at all", data=b"amount=5"),
    deposit_with("non-object body", json=[5]),
    deposit_with("string body", json="5"),
    deposit_with("null body", json=None),
    deposit_with("empty body", data=b""),
    deposit_with("float amount", json={"amount": 5.0}),
    case("fractional amount", "POST", "/accounts/{a}/withdrawals", json={"amount": 0.5}),
    deposit_with("negative amount", json={"amount": -5}),
    case("negative withdrawal", "POST", "/accounts/{a}/withdrawals", json={"amount": -5}),
    deposit_with("zero amount", json={"amount": 0}),
    deposit_with("too large amount", json={"amount": 10**15 + 1}),
    deposit_with("string amount", json={"amount": "5"}),
    deposit_with("boolean amount", json={"amount": True}),
    deposit_with("null amount", json={"amount": None}),
    deposit_with("missing amount", json={}),
    deposit_with("unknown field", json={"amount": 5, "memo": "x"}),
    deposit_with("account_id in body", json={"amount": 5, "account_id": "{new}"}),
    case("bad account id in path", "POST", "/accounts/-{a}/deposits", json=FIVE),
    deposit_with("oversize body", json={"amount": 5, "note": "x" * (64 * 1024)}),
    deposit_with("oversize whitespace", data=b'{"amount": 5}' + b" " * (64 * 1024)),
    deposit_with("bad key: space", json=FIVE, idempotency_key="a b"),
    deposit_with("bad key: leading dot", json=FIVE, idempotency_key=".abc"),
    deposit_with("bad key: too long", json=FIVE, idempotency_key="k" * 129),
    deposit_with("bad key: slash", json=FIVE, idempotency_key="a/b"),
    deposit_with("wait=maybe", json=FIVE, params={"wait": "maybe"}),
    deposit_with("timeout=0", json=FIVE, params={"wait": "true", "timeout": "0"}),
    deposit_with("timeout=-1", json=FIVE, params={"timeout": "-1"}),
    deposit_with("timeout=61", json=FIVE, params={"wait": "true", "timeout": "61"}),
    deposit_with("timeout=nan", json=FIVE, params={"timeout": "nan"}),
    deposit_with("timeout=abc", json=FIVE, params={"timeout": "abc"}),
    case("close: wait=maybe", "POST", "/accounts/{a}/close", params={"wait": "maybe"}),
    case("close: unknown field", "POST", "/accounts/{a}/close", json={"force": True}),
    case("close: bad version", "POST", "/accounts/{a}/close", json={"expected_version": -1}),
    transfer_with("transfer: float", from_account_id="{a}", to_account_id="{new}", amount=1.5),
    transfer_with("transfer: zero", from_account_id="{a}", to_account_id="{new}", amount=0),
    transfer_with(
        "transfer: bad destination", from_account_id="{a}", to_account_id="a b", amount=5
    ),
    transfer_with("transfer: no destination", from_account_id="{a}", amount=5),
    transfer_with("transfer: no source", to_account_id="{a}", amount=5),
    transfer_with(
        "transfer: unknown field", from_account_id="{a}", to_account_id="{new}", amount=5, memo="m"
    ),
    open_with("open: bad currency", account_id="{new}", currency="eur"),
    open_with("open: long currency", account_id="{new}", currency="EURO"),
    open_with("open: blank owner", account_id="{new}", owner=" "),
    open_with("open: numeric owner", account_id="{new}", owner=7),
    open_with("open: negative overdraft", account_id="{new}", overdraft_limit=-1),
    open_with("open: float overdraft", account_id="{new}", overdraft_limit=1.0),
    open_with("open: unknown field", account_id="{new}", balance=10**6),
    open_with("open: bad account id", account_id="-{new}"),
    open_with("open: numeric account id", account_id=42),
    case("open: no currency", "POST", "/accounts", json={"account_id": "{new}", "owner": "O"}),
    open_with("open: negative daily limit", account_id="{new}", daily_transfer_limit=-5),
    open_with("open: float daily limit", account_id="{new}", daily_withdrawal_limit=10.0),
    case("limits: no body", "POST", "/accounts/{a}/limits"),
    case("limits: negative", "POST", "/accounts/{a}/limits", json={"daily_withdrawal_limit": -1}),
    case("limits: text", "POST", "/accounts/{a}/limits", json={"daily_transfer_limit": "100"}),
    case("limits: too big", "POST", "/accounts/{a}/limits", json={"daily_transfer_limit": 10**16}),
    case("limits: unknown field", "POST", "/accounts/{a}/limits", json={"monthly_limit": 1}),
    history_with("history: limit=0", limit="0"),
    history_with("history: limit=501", limit="501"),
    history_with("history: limit=ten", limit="ten"),
    history_with("history: before_seq=abc", before_seq="abc"),
    history_with("history: before_seq=1.5", before_seq="1.5"),
    history_with("history: before_seq=0", before_seq="0"),
    # Hostile text and numbers; bytes that are not UTF-8 are sent raw, by
    # test_hostile_bytes_are_400_and_change_nothing.
    deposit_with("bad key: UTF-8 non-ASCII", json=FIVE, idempotency_key="clé"),
    open_keyed("open: key of UTF-8 non-ASCII", "ключ"),
    open_keyed("open: named, key of UTF-8 non-ASCII", "ключ", account_id="{new}"),
    deposit_with("timeout=1e309", json=FIVE, params={"wait": "true", "timeout": "1e309"}),
    deposit_with("timeout=inf", json=FIVE, params={"wait": "true", "timeout": "inf"}),
    deposit_with("timeout=-inf", json=FIVE, params={"wait": "true", "timeout": "-inf"}),
    deposit_with("timeout=1e-400", json=FIVE, params={"wait": "true", "timeout": "1e-400"}),
    history_with("history: limit of 5000 digits", limit="9" * 5000),
    history_with("history: limit=1e3", limit="1e3"),
    history_with("history: limit empty", limit=""),
    history_with("history: before_seq=-1", before_seq="-1"),
    history_with("history: before_seq=2**53+1", before_seq=str(2**53 + 1)),
    deposit_with("non-UTF-8 body", data=b'{"amount": 5, "x": "\xff\xfe"}'),
    deposit_with("lone surrogate in JSON", data=b'{"amount": 5, "x": "\\ud800"}'),
    deposit_with("deeply nested body", data=b'{"amount": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    deposit_with("deeply nested array body", data=b"[" * 20000 + b"]" * 20000),
    deposit_with("integer of 400 digits", data=b'{"amount": ' + b"9" * 400 + b"}"),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {name: _fill(item, names) for name, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, names) for item in value]
    return value


@pytest.mark.parametrize(("method", "path", "kwargs"), BAD_REQUESTS)
async def test_invalid_requests_are_400_and_change_nothing(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    account = await api.open(deposit=1_000)
    fresh = new_id("new")
    names = {"a": account, "new": fresh}
    kwargs = {
        name: (value if name == "data" else _fill(value, names)) for name, value in kwargs.items()
    }
    kwargs.setdefault("idempotency_key", key())
    command_id = kwargs["idempotency_key"]
    if method == "POST":
        kwargs.setdefault("params", {"wait": "true", "timeout": str(HTTP_TIMEOUT)})
    else:
        kwargs.pop("idempotency_key")
    reply = await api.request(method, _fill(path, names), **kwargs)
    assert_problem(reply, 400)
    assert reply.body["type"] == "/problems/validation"
    assert reply.body["title"] == "Bad Request"
    assert set(reply.body) == set(PROBLEM_FIELDS), reply

    # Nothing was sent: the account is unchanged, there is no outcome under the key, and
    # the fresh id was never opened.
    await marker(api, account, (1_000, 2))
    assert [i["seq"] for i in (await api.history(account))["items"]] == [3, 2, 1]
    if "/" not in command_id:  # (a key with a slash cannot even be asked about)
        assert_problem(await api.get(f"/commands/{command_id}"), 404)
    assert_problem(await api.get(f"/accounts/{fresh}"), 404)
    await api.open(fresh)  # its first event
    await expect_view(api, fresh, 0, 1)


async def test_unknown_things_are_404(api: Api) -> None:
    nobody = new_id("nobody")
    for path in (
        f"/accounts/{nobody}",
        f"/accounts/{nobody}/transactions",
        f"/accounts/{nobody}/transactions?limit=5&before_seq=3",
        f"/commands/{key()}",
    ):
        problem = assert_problem(await api.get(path), 404)
        assert problem["type"] == "/problems/not-found"
        assert problem["title"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/transfers", 405, "POST"),
        ("DELETE", "/accounts/x", 405, "GET"),
        ("PUT", "/accounts/x/deposits", 405, "POST"),
        ("GET", "/nowhere", 404, None),
    ],
    ids=["GET /transfers", "DELETE /accounts/x", "PUT deposits", "GET /nowhere"],
)
async def test_router_errors_are_problem_documents(
    api: Api, method: str, path: str, status: int, allow: str | None
) -> None:
    """Errors of the router itself, before any view runs, are problem documents too."""
    body = {"json": {"amount": 1}} if method == "PUT" else {}
    reply = await api.request(method, path, **body)
    assert_problem(reply, status)
    if allow is not None:
        assert allow in reply.headers["Allow"].split(","), reply.headers


async def test_rejections_are_422_and_change_nothing(api: Api) -> None:
    account = await api.open(deposit=1_000, overdraft_limit=100)
    euros_too = await api.open(deposit=50)
    dollars = await api.open(currency="USD", deposit=70)

    async def rejected(path: str, body: Any, reason: str) -> list[Event]:
        k = key()
        if body is None:
            reply = await api.post(path, idempotency_key=k)
        else:
            reply = await api.post(path, body, idempotency_key=k)
        events = assert_rejected(reply, k, reason)
        assert reply.body["title"] == "Unprocessable Content"
        outcome = await expect_outcome(api, k, "rejected", reason)
        assert outcome["events"] == events
        return events

    def only_rejection(events: list[Event], on: str, reason: str) -> None:
        assert [shape(e) for e in events] == [("CommandRejected", on, None, None, None)]
        assert events[0]["reason"] == reason

    # Beyond the overdraft limit: 1000 + 100 may go, 1101 may not.
    events = await rejected(
        f"/accounts/{account}/withdrawals", {"amount": 1_101}, "INSUFFICIENT_FUNDS"
    )
    only_rejection(events, account, "INSUFFICIENT_FUNDS")
    await expect_view(api, account, 1_000, 2)
    events = await rejected(
        "/transfers",
        {"from_account_id": account, "to_account_id": euros_too, "amount": 1_101},
        "INSUFFICIENT_FUNDS",
    )
    only_rejection(events, account, "INSUFFICIENT_FUNDS")
    await expect_view(api, account, 1_000, 2)
    await expect_view(api, euros_too, 50, 2)

    # Optimistic concurrency.
    events = await rejected(
        f"/accounts/{account}/deposits", {"amount": 5, "expected_version": 1}, "VERSION_CONFLICT"
    )
    only_rejection(events, account, "VERSION_CONFLICT")
    await rejected(f"/accounts/{account}/close", {"expected_version": 3}, "VERSION_CONFLICT")
    await rejected(
        "/accounts",
        {"account_id": new_id(), "owner": "O", "currency": "EUR", "expected_version": 1},
        "VERSION_CONFLICT",
    )
    await expect_view(api, account, 1_000, 2)
    reply = await api.post(
        f"/accounts/{account}/deposits", {"amount": 5, "expected_version": 2}, idempotency_key=key()
    )
    assert reply.status == 200, reply
    await expect_view(api, account, 1_005, 3)

    # Transfers to itself, and across currencies (the credit is refused and refunded).
    events = await rejected(
        "/transfers",
        {"from_account_id": account, "to_account_id": account, "amount": 5},
        "SAME_ACCOUNT",
    )
    only_rejection(events, account, "SAME_ACCOUNT")
    await expect_view(api, account, 1_005, 3)
    events = await rejected(
        "/transfers",
        {"from_account_id": account, "to_account_id": dollars, "amount": 5},
        "CURRENCY_MISMATCH",
    )
    assert [shape(e) for e in events] == [
        ("TransferDebited", account, 4, 5, 1_000),
        ("TransferRefunded", account, 5, 5, 1_005),
    ]
    await expect_view(api, account, 1_005, 5)  # the money is back, nothing in flight
    await expect_view(api, dollars, 70, 2)

    # Other rules.
    events = await rejected(
        "/accounts",
        {"account_id": account, "owner": "Again", "currency": "EUR"},
        "ACCOUNT_ALREADY_EXISTS",
    )
    only_rejection(events, account, "ACCOUNT_ALREADY_EXISTS")
    assert (await api.account(account))["owner"] == "Test Owner"
    events = await rejected(f"/accounts/{account}/close", None, "BALANCE_NOT_ZERO")
    only_rejection(events, account, "BALANCE_NOT_ZERO")
    nobody = new_id("nobody")
    events = await rejected(f"/accounts/{nobody}/deposits", {"amount": 5}, "ACCOUNT_NOT_FOUND")
    only_rejection(events, nobody, "ACCOUNT_NOT_FOUND")
    assert_problem(await api.get(f"/accounts/{nobody}"), 404)
    await rejected(f"/accounts/{nobody}/close", None, "ACCOUNT_NOT_FOUND")
    await rejected(
        "/transfers",
        {"from_account_id": nobody, "to_account_id": account, "amount": 5},
        "ACCOUNT_NOT_FOUND",
    )

    # Nothing lost, nothing applied twice.
    await expect_view(api, account, 1_005, 5)
    await expect_view(api, euros_too, 50, 2)
    await expect_view(api, dollars, 70, 2)
    await marker(api, account, (1_005, 5))
    await marker(api, euros_too, (50, 2))
    await marker(api, dollars, (70, 2))


async def test_daily_limits_are_set_shown_and_enforced(api: Api) -> None:
    account = new_id("limited")
    k = key()
    reply = await api.post(
        "/accounts",
        {"account_id": account, "owner": "Lee", "currency": "EUR", "daily_withdrawal_limit": 100},
        idempotency_key=k,
    )
    [created] = assert_accepted(reply, k)
    assert created["daily_withdrawal_limit"] == 100 and "daily_transfer_limit" not in created
    await api.deposit(account, 1_000)
    view = await expect_view(api, account, 1_000, 2)
    assert (view["daily_withdrawal_limit"], view["daily_transfer_limit"]) == (100, None)

    k = key()
    reply = await api.post(f"/accounts/{account}/withdrawals", {"amount": 70}, idempotency_key=k)
    assert_accepted(reply, k)
    k = key()
    reply = await api.post(f"/accounts/{account}/withdrawals", {"amount": 31}, idempotency_key=k)
    assert_rejected(reply, k, "LIMIT_EXCEEDED")
    await marker(api, account, (930, 3))

    # Lifted: the same withdrawal goes through.
    k = key()
    reply = await api.post(f"/accounts/{account}/limits", {}, idempotency_key=k)
    [limits] = assert_accepted(reply, k)
    assert (limits["type"], limits["seq"]) == ("LimitsSet", 5)
    view = await expect_view(api, account, 931, 5)
    assert view["daily_withdrawal_limit"] is None
    k = key()
    reply = await api.post(f"/accounts/{account}/withdrawals", {"amount": 31}, idempotency_key=k)
    assert_accepted(reply, k)
    [line] = (await api.history(account, limit=2))["items"][1:]
    assert (line["type"], line["amount"], line["balance"]) == ("LimitsSet", 0, 931)


async def test_a_rejection_without_wait_is_202_then_readable_by_command_id(api: Api) -> None:
    account = await api.open(deposit=10)
    k = key()
    reply = await api.post(
        f"/accounts/{account}/withdrawals", {"amount": 11}, idempotency_key=k, wait=False
    )
    assert (reply.status, reply.body) == (202, {"command_id": k, "status": "pending"})
    outcome = await eventually(
        lambda: api.get(f"/commands/{k}"),
        lambda r: r.status == 200 and r.body["status"] != "pending",
        what="the outcome",
    )
    assert outcome.body["status"] == "rejected"
    assert outcome.body["reason"] == "INSUFFICIENT_FUNDS"
    assert [e["type"] for e in outcome.body["events"]] == ["CommandRejected"]
    await marker(api, account, (10, 2))


async def _chunks(*parts: bytes, pause: float = 2.0) -> AsyncIterator[bytes]:
    for n, chunk in enumerate(parts):
        if n:
            await asyncio.sleep(pause)
        yield chunk


async def test_a_body_sent_in_chunks_is_read_whole(api: Api) -> None:
    account = await api.open()
    k = key()
    reply = await api.post(
        f"/accounts/{account}/deposits",
        data=_chunks(b'{"amount":', b" 5}"),
        idempotency_key=k,
        headers={"Content-Type": "application/json"},
    )
    assert_accepted(reply, k)


async def test_a_chunked_body_over_64_kib_is_refused(api: Api) -> None:
    account = await api.open()
    reply = await api.post(
        f"/accounts/{account}/deposits",
        data=_chunks(b'{"amount": 7}', b" " * (70 * 1024)),
        idempotency_key=key(),
        headers={"Content-Type": "application/json"},
    )
    await marker(api, account, (0, 1))  # first: nothing was applied
    assert_problem(reply, 400)


OPEN_BODY = b'{"owner": "O", "currency": "EUR"}'
JSON = b"Content-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        # A Latin-1 "é": aiohttp decodes it to a lone surrogate, which a plain encode()
        # refuses; the new account's id is derived from the key, so the key must be
        # refused first (a 400, not a 500).
        pytest.param("/accounts", b"Idempotency-Key: \xe9\r\n", OPEN_BODY, id="open: key 0xE9"),
        pytest.param(
            "/accounts", b"Idempotency-Key: k\xff\xfe\r\n", OPEN_BODY, id="open: key 0xFF"
        ),
        pytest.param(
            "/accounts", b"Idempotency-Key: \xed\xa0\x80\r\n", OPEN_BODY, id="open: surrogate"
        ),
        pytest.param(DEPOSITS, b"Idempotency-Key: \xe9\r\n", b'{"amount": 5}', id="deposit: 0xE9"),
        # A body that is not what its Content-Encoding says: aiohttp fails reading it.
        pytest.param(DEPOSITS, b"Content-Encoding: gzip\r\n", b'{"amount": 5}', id="not gzip"),
        pytest.param(
            DEPOSITS, b"Content-Encoding: deflate\r\n", b'{"amount": 5}', id="not deflate"
        ),
    ],
)
async def test_hostile_bytes_are_400_and_change_nothing(
    api: Api, path: str, headers: bytes, body: bytes
) -> None:
    account = await api.open(deposit=1_000)
    reply = await raw_request(api.url, "POST", path.format(a=account), JSON + headers, body)
    assert_problem(reply, 400)
    assert reply.body["type"] == "/problems/validation", reply
    await marker(api, account, (1_000, 2))


# ------------------------------------------------------------------------ operations


async def test_health_metrics_and_openapi(api: Api) -> None:
    await api.open(deposit=1)  # so that there are commands to count

    reply = await api.get("/health")
    assert (reply.status, reply.body) == (200, {"status": "ready"})

    reply = await api.get("/metrics")
    assert reply.status == 200
    assert reply.content_type == "text/plain"
    assert "banking_commands_total" in reply.text
    assert 'banking_commands_total{type="DEPOSIT"}' in reply.text
    assert "banking_http_request_duration_seconds" in reply.text
    assert "banking_http_request_duration_seconds_bucket{" in reply.text
    assert 'route="/accounts/{account_id}/deposits"' in reply.text
    # Memory by part: the RSS, glibc's heap, and what RocksDB's budget holds.
    memory = parse_memory(reply.text)
    assert set(memory) == {"rss", "heap_in_use", "heap_free", "rocksdb"}, memory
    assert 0 < memory["rocksdb"] <= 256 << 20
    assert 0 < memory["heap_in_use"] < memory["rss"]
    # The worker was executed on jemalloc where it is installed (operations.allocator).
    expected = "jemalloc" if library() else "glibc"
    assert f'banking_memory_allocator{{allocator="{expected}"}} 1.0' in reply.text
    # The event loop's lateness, sampled ten times a second since the worker started.
    wakes = re.search(r"^banking_event_loop_lag_seconds_count (\S+)$", reply.text, re.M)
    assert wakes is not None and float(wakes.group(1)) > 0, reply.text
    # Lag is the end offset minus the next offset owed to the agent: once the deposit
    # is done, every consumed partition is caught up.
    deadline = time.monotonic() + 30
    while True:
        text = (await api.get("/metrics")).text
        lags = [
            (re.search(r'topic="([^"]*)"', labels).group(1), value)  # type: ignore[union-attr]
            for labels, value in re.findall(r"^banking_consumer_lag\{([^}]*)\} (\S+)$", text, re.M)
        ]
        if {t for t, _ in lags} >= {"commands", "events"} and all(float(v) == 0 for _, v in lags):
            break
        assert time.monotonic() < deadline, lags
        await asyncio.sleep(0.5)

    reply = await api.get("/openapi.json")
    assert reply.status == 200 and reply.content_type == "application/json"
    spec = reply.body
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) >= {
        "/accounts",
        "/accounts/{account_id}",
        "/accounts/{account_id}/deposits",
        "/accounts/{account_id}/withdrawals",
        "/accounts/{account_id}/close",
        "/accounts/{account_id}/transactions",
        "/transfers",
        "/commands/{command_id}",
        "/health",
        "/metrics",
        "/openapi.json",
    }
    assert set(spec["paths"]["/transfers"]) == {"post"}
    assert set(spec["paths"]["/accounts/{account_id}"]) == {"get"}
    assert {"200", "202", "400", "422"} <= set(spec["paths"]["/transfers"]["post"]["responses"])


# ------------------------------------------------------------------------------ auth

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def auth_broker() -> Iterator[Broker]:
    """A broker of its own, so the session worker's group is not disturbed."""
    with Broker.start() as running:
        yield running


async def test_a_token_guards_commands_and_optionally_reads(
    auth_broker: Broker, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    with running_workers(auth_broker, tmp_path / "writes", {"BANKING_API_TOKEN": TOKEN}) as (
        guarded,
    ):
        anonymous = Api(session, guarded.url)
        wrong = Api(session, guarded.url, token="s3cre")
        right = Api(session, guarded.url, token=TOKEN)
        account = new_id()
        body = {"account_id": account, "owner": "O", "currency": "EUR"}

        for client in (anonymous, wrong):
            problem = await _unauthorized(client.post("/accounts", body, idempotency_key=key()))
            assert "Bearer" in problem["detail"]
        await _unauthorized(
            anonymous.post("/accounts", body, headers={"Authorization": f"Basic {TOKEN}"})
        )
        await _unauthorized(
            anonymous.post("/accounts", body, headers={"Authorization": f"Bearer {TOKEN}x"})
        )
        # Token bytes that are not UTF-8: aiohttp decodes them to lone surrogates, which
        # the comparison must encode without failing (a 401, not a 500).
        for token in (b"s3cr\xe9t", b"\xff\xfe", TOKEN.encode() + b"\xe9"):
            authorization = b"Authorization: Bearer " + token + b"\r\n"
            await _unauthorized(
                raw_request(guarded.url, "POST", "/accounts", JSON + authorization, OPEN_BODY)
            )

        k = key()
        reply = await right.post("/accounts", body, idempotency_key=k, wait=False)
        assert (reply.status, reply.body["command_id"]) == (202, k)
        reply = await right.post("/accounts", body, idempotency_key=k)
        assert_accepted(reply, k)
        for client in (anonymous, wrong):
            await _unauthorized(
                client.post(f"/accounts/{account}/deposits", {"amount": 5}, idempotency_key=key())
            )
            await _unauthorized(client.post(f"/accounts/{account}/close"))
            await _unauthorized(
                client.post(
                    "/transfers",
                    {"from_account_id": account, "to_account_id": "x", "amount": 1},
                )
            )
        await right.deposit(account, 40)

        # Reads stay open (a wrong token does not matter either), as do operations.
        for client in (anonymous, wrong):
            assert view_state(await client.account(account)) == (40, 2, "OPEN", 0)
            assert (await client.get(f"/accounts/{account}/transactions")).status == 200
            assert (await client.get(f"/commands/{k}")).status == 200
            assert (await client.get("/health")).status == 200
            assert (await client.get("/openapi.json")).status == 200
            assert (await client.get("/metrics")).status == 200
        await marker(right, account, (40, 2))

    # A worker that also guards reads (the first is gone; its state is in Kafka).
    env = {"BANKING_API_TOKEN": TOKEN, "BANKING_API_TOKEN_READS": "1"}
    with running_workers(auth_broker, tmp_path / "reads", env) as (guarded,):
        anonymous = Api(session, guarded.url)
        wrong = Api(session, guarded.url, token="nope")
        right = Api(session, guarded.url, token=TOKEN)
        await right.deposit(account, 1)
        assert view_state(await right.account(account)) == (42, 4, "OPEN", 0)
        assert (await right.get(f"/accounts/{account}/transactions")).status == 200
        assert (await right.get(f"/commands/{k}")).status == 200
        assert_problem(await right.get(f"/accounts/{new_id()}"), 404)
        for client in (anonymous, wrong):
            for path in (
                f"/accounts/{account}",
                f"/accounts/{new_id()}",
                f"/accounts/{account}/transactions",
                f"/commands/{k}",
            ):
                await _unauthorized(client.get(path))
            await _unauthorized(client.post(f"/accounts/{account}/deposits", {"amount": 5}))
            assert (await client.get("/health")).status == 200
            assert (await client.get("/openapi.json")).status == 200
        assert view_state(await right.account(account)) == (42, 4, "OPEN", 0)


async def _unauthorized(request: Any) -> dict[str, Any]:
    reply = await request
    problem = assert_problem(reply, 401)
    assert problem["type"] == "/problems/unauthorized"
    assert problem["title"] == "Unauthorized"
    assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer"), reply.headers
    return problem
