"""A read forwarded to a worker that does not answer, or cannot be reached, is a 504 or a
503 problem document within BANKING_FORWARD_TIMEOUT: not a hung request, nor a 500.

A broker of its own and two workers. The second advertises itself to the group at an
address where it does not listen (``BANKING_WEB_HOST=127.0.0.2`` on its web port, while
it binds 127.0.0.1 only), so every request the first worker forwards to it goes to what
the test puts there: a TCP server that accepts and never answers, or nothing at all
(connection refused). The second worker itself keeps working: it processes its
partitions and answers requests sent to it directly.

The workers keep no standby replicas (Faust's ``TABLE_STANDBY_REPLICAS=0``): with one,
the first would answer from its replica instead (``web.routed``, tested
with a worker SIGKILLed in ``tests/faults/test_failover.py``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
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
    part,
    raw_request,
    running_workers,
    wait_for,
)

from support.cluster import Broker, Worker
from support.silent_server import silent_server

pytestmark = pytest.mark.kafka

FORWARD_TIMEOUT = 2.0
#: Seconds an answer may take beyond its limit on a slow, shared machine.
MARGIN = 15.0
SETTLE_TIMEOUT = 180.0
ADVERTISED_HOST = "127.0.0.2"


@dataclass
class Cluster:
    gateway: Worker  # forwards to ``away``
    away: Worker  # reached by ``gateway`` only at ADVERTISED_HOST, where it does not listen

    def away_partitions(self) -> list[int]:
        return sorted(consumer_partitions(self.away, "events"))

    def held_by_away(self, prefix: str) -> str:
        """A fresh id (account or command) on a partition ``away`` holds."""
        return id_on_partition(self.away_partitions()[0], prefix)

    def held_by_gateway(self, prefix: str) -> str:
        owned = sorted(consumer_partitions(self.gateway, "events"))
        return id_on_partition(owned[0], prefix)


def _settled(cluster: Cluster, probes: list[str]) -> bool:
    """Both ready, the partitions split between them, every probe readable via ``away``."""
    if any(worker.health() != 200 for worker in (cluster.gateway, cluster.away)):
        return False
    gateway = consumer_partitions(cluster.gateway, "events")
    away = consumer_partitions(cluster.away, "events")
    if not (gateway and away) or gateway & away or gateway | away != set(range(PARTITIONS)):
        return False
    return all(
        http_json("GET", f"{cluster.away.url}/accounts/{probe}")[0] == 200 for probe in probes
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("forwarding")
    timeout = {"BANKING_FORWARD_TIMEOUT": str(FORWARD_TIMEOUT), "TABLE_STANDBY_REPLICAS": "0"}
    # WEB_BIND is Faust's own variable: the address the web server listens on.
    away = {**timeout, "BANKING_WEB_HOST": ADVERTISED_HOST, "WEB_BIND": "127.0.0.1"}
    with Broker.start() as broker, running_workers(broker, root, timeout, away) as workers:
        cluster = Cluster(*workers)
        # One account on every partition, opened through ``away`` (which reaches the
        # gateway normally), retried until the group has settled.
        probes = [id_on_partition(p, "probe") for p in range(PARTITIONS)]
        for account_id in probes:
            body = {"account_id": account_id, "owner": "Probe", "currency": "EUR"}
            url = f"{cluster.away.url}/accounts?wait=true&timeout={HTTP_TIMEOUT}"
            command_id = key()
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while http_json("POST", url, body, {"Idempotency-Key": command_id})[0] != 200:
                assert time.monotonic() < deadline, cluster.away.log_tail()
                time.sleep(0.5)
        wait_for(lambda: _settled(cluster, probes), "a settled assignment", SETTLE_TIMEOUT)
        yield cluster


@pytest.fixture()
async def silent(cluster: Cluster) -> AsyncIterator[None]:
    """A TCP server where the gateway reaches ``away``: it accepts and never answers."""
    async with silent_server(ADVERTISED_HOST, cluster.away.web_port):
        yield


@pytest.fixture()
async def apis(cluster: Cluster, session: aiohttp.ClientSession) -> tuple[Api, Api]:
    return Api(session, cluster.gateway.url), Api(session, cluster.away.url)


async def _opened(api: Api, account_id: str) -> str:
    """Open ``account_id`` and fund it with 100, through ``api``."""
    await api.open(account_id, deposit=100)
    return account_id


@pytest.mark.usefixtures("silent")
async def test_an_owner_that_never_answers_is_504_within_the_forward_timeout(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    gateway, away = apis
    account = await _opened(away, cluster.held_by_away("silent"))
    command_id = cluster.held_by_away("cmd")
    for path in (
        f"/accounts/{account}",
        f"/accounts/{account}/transactions",
        f"/commands/{command_id}",
    ):
        started = time.monotonic()
        problem = assert_problem(await gateway.get(path), 504)
        took = time.monotonic() - started
        assert problem["type"] == "/problems/worker-timeout", problem
        assert problem["title"] == "Gateway Timeout"
        assert f"http://{ADVERTISED_HOST}:{cluster.away.web_port}" in problem["detail"]
        assert f"within {FORWARD_TIMEOUT:g} s" in problem["detail"]
        assert FORWARD_TIMEOUT * 0.9 <= took < FORWARD_TIMEOUT + MARGIN, (path, took)

    # A POST first asks whoever holds its key's outcome whether it was applied before:
    # that lookup runs out too, and nothing is sent.
    started = time.monotonic()
    reply = await gateway.post(
        f"/accounts/{account}/deposits", {"amount": 5}, idempotency_key=command_id
    )
    problem = assert_problem(reply, 504)
    assert time.monotonic() - started < FORWARD_TIMEOUT + MARGIN
    assert "retry" in problem["detail"]
    assert_problem(await away.get(f"/commands/{command_id}"), 404)
    assert (await away.account(account))["balance"] == 100


@pytest.mark.usefixtures("silent")
async def test_a_wait_on_an_owner_that_never_answers_runs_out_as_202_pending(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """The outcome is the gateway's own; the account's view is ``away``'s, which the wait
    must see too: every lookup of it runs out, and so does the wait, on time."""
    gateway, away = apis
    account = await _opened(away, cluster.held_by_away("waited"))
    command_id = cluster.held_by_gateway("cmd")
    wait = 3 * FORWARD_TIMEOUT
    started = time.monotonic()
    reply = await gateway.post(
        f"/accounts/{account}/deposits",
        {"amount": 5},
        idempotency_key=command_id,
        wait=False,
        params={"wait": "true", "timeout": str(wait)},
    )
    took = time.monotonic() - started
    assert (reply.status, reply.body) == (202, {"command_id": command_id, "status": "pending"})
    assert reply.headers["Location"] == f"/commands/{command_id}"
    assert wait * 0.9 <= took < wait + MARGIN, took
    # The deposit was sent, and applied by ``away``.
    await eventually(
        lambda: away.account(account), lambda view: view["balance"] == 105, what="the deposit"
    )
    outcome = await gateway.get(f"/commands/{command_id}")
    assert outcome.status == 200 and outcome.body["status"] == "accepted", outcome


async def test_an_owner_that_cannot_be_reached_is_503(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    gateway, away = apis
    account = await _opened(away, cluster.held_by_away("refused"))
    command_id = cluster.held_by_away("cmd")
    for path in (f"/accounts/{account}", f"/commands/{command_id}"):
        started = time.monotonic()
        problem = assert_problem(await gateway.get(path), 503)
        assert time.monotonic() - started < FORWARD_TIMEOUT + MARGIN
        assert problem["type"] == "/problems/worker-unreachable", problem
        assert "could not be reached" in problem["detail"]
    reply = await gateway.post(
        f"/accounts/{account}/deposits", {"amount": 5}, idempotency_key=command_id
    )
    assert assert_problem(reply, 503)["type"] == "/problems/worker-unreachable"
    assert_problem(await away.get(f"/commands/{command_id}"), 404)
    # Reads of keys the gateway holds, and everything through ``away``, still work.
    assert (await away.account(account))["balance"] == 100
    assert (await gateway.get(f"/accounts/{cluster.held_by_gateway('nobody')}")).status == 404


async def test_a_host_header_that_names_no_host_is_400_when_forwarded(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """Faust rewrites the request's URL to forward it, which a ``Host`` of ``[`` breaks."""
    _, away = apis
    account = await _opened(away, cluster.held_by_gateway("hosted"))
    assert part(account) not in cluster.away_partitions()
    reply = await raw_request(away.url, "GET", f"/accounts/{account}", b"", host=b"[")
    assert_problem(reply, 400)
    assert "Host" in reply.body["detail"]


# --- GET /alerts: gathered from every worker ---------------------------------------------

#: Above the large-movement rule's fixed limit (BANKING_ALERT_LARGE_LIMIT): one alert.
LARGE = 1_000_001


def alerted(reply: Any, *accounts: str) -> bool:
    found = {alert["account_id"] for alert in reply.body["alerts"]} if reply.status == 200 else ()
    return all(account in found for account in accounts)


async def test_the_bank_s_alerts_are_gathered_from_every_worker(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    """``away`` reaches the gateway normally: its answer holds both workers' alerts."""
    gateway, away = apis
    here = await away.open(cluster.held_by_gateway("large"), deposit=LARGE)
    there = await away.open(cluster.held_by_away("large"), deposit=LARGE)
    reply = await eventually(
        lambda: away.get("/alerts"), lambda r: alerted(r, here, there), what="both alerts"
    )
    mine = [alert for alert in reply.body["alerts"] if alert["account_id"] in {here, there}]
    assert {(a["rule"], a["severity"]) for a in mine} == {("large_movement", "high")}
    # Each worker answers for its own partitions alone when asked to.
    local = await gateway.get("/alerts", params={"scope": "local"})
    assert alerted(local, here) and not alerted(local, there)
    # An account's alerts, forwarded to its owner.
    forwarded = await away.get(f"/accounts/{here}/alerts")
    assert forwarded.status == 200 and [a["account_id"] for a in forwarded.body["alerts"]] == [here]
    for query in ({"since": "not a time"}, {"limit": "0"}, {"scope": "everywhere"}):
        assert_problem(await away.get("/alerts", params=query), 400)
    assert_problem(await away.get("/accounts/-bad/alerts"), 400)


@pytest.mark.usefixtures("silent")
async def test_the_bank_s_alerts_with_a_worker_that_never_answers_are_504(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    gateway, _ = apis
    for path in ("/alerts", f"/accounts/{cluster.held_by_away('quiet')}/alerts"):
        problem = assert_problem(await gateway.get(path), 504)
        assert problem["type"] == "/problems/worker-timeout", problem


async def test_the_bank_s_alerts_with_a_worker_out_of_reach_are_503(
    cluster: Cluster, apis: tuple[Api, Api]
) -> None:
    gateway, _ = apis
    problem = assert_problem(await gateway.get("/alerts"), 503)
    assert problem["type"] == "/problems/worker-unreachable", problem
