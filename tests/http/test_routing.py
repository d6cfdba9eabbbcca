"""Two workers, one API: any worker answers for any account, whoever owns its partition.

A broker of its own and two workers on it (one consumer group, 8 partitions split
between them); and the same tests on the split layout, an event processor and two
query-service workers (``LAYOUTS``). Reads are forwarded by ``table_route`` to the
worker that owns the key; ``?wait=true`` waits on whichever workers hold the outcome and
the accounts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_client import (
    HTTP_TIMEOUT,
    PARTITIONS,
    Api,
    assert_problem,
    consumer_partitions,
    eventually,
    http_json,
    id_on_partition,
    key,
    new_id,
    part,
    running_workers,
    view_state,
    wait_for,
)

from support.cluster import Broker, Worker

pytestmark = pytest.mark.kafka

SETTLE_TIMEOUT = 180.0


@dataclass
class Cluster:
    first: Worker
    second: Worker

    def owned(self) -> tuple[set[int], set[int]]:
        """The ``events`` partitions each worker consumes (and so whose views it holds)."""
        return consumer_partitions(self.first, "events"), consumer_partitions(self.second, "events")

    def owner(self, account_id: str) -> Worker:
        """The worker that holds ``account_id``'s view."""
        first, second = self.owned()
        if part(account_id) in first:
            return self.first
        assert part(account_id) in second, (account_id, first, second)
        return self.second

    def outcome_owner(self, command_id: str) -> Worker:
        """The worker that holds a command's outcome: outcomes are keyed by command id, on
        topics of as many partitions as ``events``, and Faust gives partition n of all
        such topics to one worker."""
        return self.owner(command_id)

    def api(self, worker: Worker, apis: tuple[Api, Api]) -> Api:
        return apis[0] if worker is self.first else apis[1]

    def other(self, worker: Worker, apis: tuple[Api, Api]) -> Api:
        return apis[1] if worker is self.first else apis[0]


def _settled(cluster: Cluster, probes: dict[str, str]) -> bool:
    """Both ready, every probe readable through both, and the partitions split in two."""
    workers = (cluster.first, cluster.second)
    if any(worker.health() != 200 for worker in workers):
        return False
    for worker in workers:
        for account_id in probes:
            status, _ = http_json("GET", f"{worker.url}/accounts/{account_id}")
            if status != 200:
                return False
    first, second = cluster.owned()
    return (
        bool(first)
        and bool(second)
        and first | second == set(range(PARTITIONS))
        and not (first & second)
    )


#: The layouts the tests run on, by the workers' environments. The last two workers are
#: the ones the tests speak to: both hold read partitions and answer every route.
LAYOUTS = {
    # Two workers of role all, as the bank has always scaled.
    "two-workers": ({}, {}),
    # The split layout: an event processor, and the query service on two workers (the
    # POSTs they take are produced by them: the command service is every worker's).
    "split": (
        {"BANKING_ROLE": "processor"},
        {"BANKING_ROLE": "query"},
        {"BANKING_ROLE": "query"},
    ),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("routing")
    with (
        Broker.start() as broker,
        running_workers(broker, root, *LAYOUTS[request.param]) as workers,
    ):
        first, second = workers[-2:]
        cluster = Cluster(first, second)
        # One account on every partition (retried with the same key until the group has
        # settled: a POST during a rebalance may answer 503 or 202).
        probes = {id_on_partition(p, "probe"): key() for p in range(PARTITIONS)}
        for account_id, command_id in probes.items():
            body = {"account_id": account_id, "owner": "Probe", "currency": "EUR"}
            url = f"{first.url}/accounts?wait=true&timeout={HTTP_TIMEOUT}"
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while True:
                status, reply = http_json("POST", url, body, {"Idempotency-Key": command_id})
                if status == 200:
                    break
                assert time.monotonic() < deadline, (status, reply, first.log_tail())
                time.sleep(0.5)
        wait_for(lambda: _settled(cluster, probes), "a settled assignment", SETTLE_TIMEOUT)
        yield cluster


@pytest.fixture()
async def apis(cluster: Cluster, session: aiohttp.ClientSession) -> tuple[Api, Api]:
    return Api(session, cluster.first.url), Api(session, cluster.second.url)


async def test_every_account_is_readable_through_both_workers(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    first, second = apis
    # One account on every partition, and some more anywhere: 12 in all, opened and
    # funded through alternating workers.
    accounts = [id_on_partition(p, "routed") for p in range(PARTITIONS)]
    accounts += [new_id("routed") for _ in range(4)]
    commands: dict[str, tuple[str, str]] = {}
    for n, account_id in enumerate(accounts):
        through = (first, second)[n % 2]
        opened, funded = key(), key()
        reply = await through.post(
            "/accounts",
            {"account_id": account_id, "owner": f"Owner {n}", "currency": "EUR"},
            idempotency_key=opened,
        )
        assert reply.status == 200, reply
        await through.deposit(account_id, 100 + n, command_id=funded)
        commands[account_id] = (opened, funded)

    owners = {account_id: cluster.owner(account_id) for account_id in accounts}
    assert {owner.url for owner in owners.values()} == {first.url, second.url}

    for n, account_id in enumerate(accounts):
        opened, funded = commands[account_id]
        for api in (first, second):
            view = await api.account(account_id)
            assert view["account_id"] == account_id and view["owner"] == f"Owner {n}"
            assert view_state(view) == (100 + n, 2, "OPEN", 0)
            history = await api.history(account_id)
            assert [(i["seq"], i["command_id"]) for i in history["items"]] == [
                (2, funded),
                (1, opened),
            ]
            assert history["account_id"] == account_id
            for command_id, kind in ((opened, "AccountCreated"), (funded, "MoneyDeposited")):
                reply = await api.get(f"/commands/{command_id}")
                assert reply.status == 200, (api.url, reply)
                outcome = reply.body
                assert (outcome["command_id"], outcome["status"]) == (command_id, "accepted")
                assert [(e["type"], e["account_id"]) for e in outcome["events"]] == [
                    (kind, account_id)
                ]
            # Errors come back as problem documents through the forwarding too.
            reply = await api.get(f"/accounts/{account_id}/transactions", params={"limit": "0"})
            assert_problem(reply, 400)

    for api in (first, second):
        for p in range(PARTITIONS):
            nobody = id_on_partition(p, "nobody")
            assert_problem(await api.get(f"/accounts/{nobody}"), 404)
            assert_problem(await api.get(f"/accounts/{nobody}/transactions"), 404)
        assert_problem(await api.get(f"/commands/{key()}"), 404)


async def test_a_write_through_one_worker_is_read_at_once_through_the_other(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    first, second = apis
    by_url = {first.url: first, second.url: second}
    owned_by_first, owned_by_second = (sorted(p) for p in cluster.owned())
    on_first = await first.open(id_on_partition(owned_by_first[0], "a"), deposit=1_000)
    on_second = await first.open(id_on_partition(owned_by_second[0], "b"), deposit=1_000)
    assert cluster.owner(on_first) is cluster.first
    assert cluster.owner(on_second) is cluster.second

    async def expect(account_id: str, balance: int, version: int) -> None:
        for api in (first, second):  # owner first or not: no retry either way
            view = await api.account(account_id)
            assert (view["balance"], view["version"]) == (balance, version), (api.url, view)

    # Written through the worker that does not own the account, read at once through
    # the owner (and through the writer, which forwards).
    for n, (account_id, writer) in enumerate(((on_second, first), (on_first, second)), start=1):
        owner = by_url[cluster.owner(account_id).url]
        assert writer is not owner
        k = key()
        reply = await writer.post(
            f"/accounts/{account_id}/deposits", {"amount": 10 * n}, idempotency_key=k
        )
        assert reply.status == 200, reply
        assert reply.body["events"][0]["balance"] == 1_000 + 10 * n
        view = await owner.account(account_id)
        assert (view["balance"], view["version"]) == (1_000 + 10 * n, 3), view
        assert (await owner.get(f"/commands/{k}")).body["status"] == "accepted"
        await expect(account_id, 1_000 + 10 * n, 3)

    # A transfer across the two workers, sent to each in turn.
    reply = await first.post(
        "/transfers",
        {"from_account_id": on_first, "to_account_id": on_second, "amount": 300},
        idempotency_key=key(),
    )
    assert reply.status == 200, reply
    await expect(on_first, 720, 4)
    await expect(on_second, 1_310, 4)
    reply = await second.post(
        "/transfers",
        {"from_account_id": on_second, "to_account_id": on_first, "amount": 10},
        idempotency_key=key(),
    )
    assert reply.status == 200, reply
    await expect(on_second, 1_300, 5)
    await expect(on_first, 730, 5)

    # A rejection decided on the other worker comes back as the same 422.
    k = key()
    reply = await second.post(
        "/transfers",
        {"from_account_id": on_first, "to_account_id": new_id("nobody"), "amount": 20},
        idempotency_key=k,
    )
    problem = assert_problem(reply, 422, "ACCOUNT_NOT_FOUND")
    assert problem["command_id"] == k
    await expect(on_first, 730, 7)
    for api in (first, second):
        outcome: Any = (await api.get(f"/commands/{k}")).body
        assert (outcome["status"], outcome["reason"]) == ("rejected", "ACCOUNT_NOT_FOUND")


def test_the_two_workers_split_the_partitions(cluster: Cluster) -> None:
    first, second = cluster.owned()
    assert first and second
    assert first | second == set(range(PARTITIONS))
    assert not first & second
    assert Path(cluster.first.directory) != Path(cluster.second.directory)


def key_owned_by(cluster: Cluster, worker: Worker, text: str) -> str:
    """A fresh command id containing ``text`` whose outcome ``worker`` holds."""
    while True:
        candidate = f"{key()[:12]}{text}"
        if cluster.outcome_owner(candidate) is worker:
            return candidate


async def test_command_ids_with_unreserved_characters_are_waited_for_across_workers(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """The worker answering ``?wait=true`` asks the worker holding the outcome, by URL."""
    first, second = apis
    account = await first.open(id_on_partition(0, "keys"), deposit=1)
    n = 1
    for receiver in (cluster.first, cluster.second):
        for holder in (cluster.first, cluster.second):
            k = key_owned_by(cluster, holder, "~a.b_c-d")
            reply = await cluster.api(receiver, apis).post(
                f"/accounts/{account}/deposits", {"amount": 1}, idempotency_key=k
            )
            n += 1
            assert reply.status == 200, (receiver.url, holder.url, reply)
            assert reply.body["events"][0]["balance"] == n
            for api in (first, second):
                outcome = (await api.get(f"/commands/{k}")).body
                assert (outcome["command_id"], outcome["status"]) == (k, "accepted")
    # Ids with the other allowed characters, waited for where the outcome is.
    for holder in (cluster.first, cluster.second):
        k = key_owned_by(cluster, holder, ":x@y+z=w")
        reply = await cluster.api(holder, apis).post(
            f"/accounts/{account}/deposits", {"amount": 1}, idempotency_key=k
        )
        n += 1
        assert reply.status == 200, reply
        for api in (first, second):
            outcome = (await api.get(f"/commands/{k}")).body
            assert (outcome["command_id"], outcome["status"]) == (k, "accepted")
    for api in (first, second):
        assert view_state(await api.account(account)) == (n, n + 1, "OPEN", 0)


#: Seconds: long enough for an outcome that exists; the bug below waits in vain.
SHORT_WAIT = {"wait": "true", "timeout": "10"}


@pytest.mark.parametrize("which", ["command id", "account id"])
async def test_ids_with_reserved_characters_are_waited_for_across_workers(
    cluster: Cluster, apis: tuple[Api, Api], which: str
) -> None:
    receiver = cluster.first
    if which == "command id":
        account = await cluster.api(receiver, apis).open(deposit=1)
        k = key_owned_by(cluster, cluster.second, ":x@y+z=w")
        reply = await cluster.api(receiver, apis).post(
            f"/accounts/{account}/deposits",
            {"amount": 1},
            idempotency_key=k,
            wait=False,
            params=SHORT_WAIT,
        )
    else:
        owned_by_second = sorted(consumer_partitions(cluster.second, "events"))
        while True:
            account = id_on_partition(owned_by_second[0], "colon:id")
            k = key()
            if cluster.outcome_owner(k) is receiver:
                break  # (only the account is elsewhere)
        reply = await cluster.api(receiver, apis).post(
            "/accounts",
            {"account_id": account, "owner": "O", "currency": "EUR"},
            idempotency_key=k,
            wait=False,
            params=SHORT_WAIT,
        )
    # The command was applied either way:
    await eventually(
        lambda: cluster.other(receiver, apis).get(f"/commands/{k}"),
        lambda r: r.status == 200 and r.body["status"] == "accepted",
        what="the outcome",
    )
    assert reply.status == 200, reply
