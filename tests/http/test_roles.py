"""Worker roles as real processes: each role alone (on the embedded broker), the three
together behind any one address, and each of the processor and the query service
SIGKILLed while the others go on (on the embedded broker and on Apache Kafka).

A role alone shows what it is: the command service sends commands that nobody decides
and has nobody to ask for reads; the processor decides them; the query service answers
reads and says that processing is delayed. Together, every process answers every route,
and ``?wait=true`` reads its write through any of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_client import (
    PARTITIONS,
    Api,
    assert_problem,
    consumer_partitions,
    eventually,
    http_json,
    key,
    new_id,
    view_state,
    wait_for,
)

from banking_app.operations.priority import PROCESSOR_NICENESS
from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Broker, Client, Worker

pytestmark = pytest.mark.kafka

#: Seconds to wait for the group to notice a SIGKILLed member (its session, 6 s by
#: default, then a rebalance) and for a restarted worker to recover.
SETTLE_TIMEOUT = 180.0


def health(worker: Worker) -> tuple[int | None, Any]:
    return http_json("GET", f"{worker.url}/health")  # type: ignore[no-any-return]


def takes(worker: Worker, topic: str, partitions: set[int]) -> None:
    """Wait until ``worker`` consumes exactly ``partitions`` of ``topic``."""
    wait_for(
        lambda: consumer_partitions(worker, topic) == partitions,
        f"{worker.role} consuming {sorted(partitions)} of {topic}",
        SETTLE_TIMEOUT,
    )


ALL = set(range(PARTITIONS))


def niceness(worker: Worker) -> set[int]:
    """The niceness of each of the worker's threads (Linux keeps one per thread)."""
    assert worker.process is not None
    tasks = os.listdir(f"/proc/{worker.process.pid}/task")
    return {os.getpriority(os.PRIO_PROCESS, int(task)) for task in tasks}


def start(broker: Broker, root: Path, role: str, **env: str) -> Worker:
    directory = root / role
    directory.mkdir(parents=True, exist_ok=True)
    worker = Worker(broker, directory, role=role, env=env)
    worker.start()
    return worker


async def events_of(broker: Broker, command_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The events a command caused, read from the ``events`` topic itself."""
    async with Client(broker) as client:
        return await client.read(
            "events",
            lambda found: len(found) >= count,
            timeout=SETTLE_TIMEOUT,
            where=lambda event: event.get("command_id") == command_id,
        )


async def send_opening(api: Api) -> tuple[str, str]:
    """Open a new account through ``api`` without waiting: (its id, the command id)."""
    account, k = new_id(), key()
    body = {"account_id": account, "owner": "Ann", "currency": "EUR"}
    reply = await api.post("/accounts", body, idempotency_key=k, wait=False)
    assert (reply.status, reply.body["status"]) == (202, "pending"), reply
    return account, k


async def has_nowhere_to_read(api: Api, account: str) -> None:
    """A worker without the read model, and no query worker to send reads to: 503."""
    problem = assert_problem(await api.get(f"/accounts/{account}"), 503)
    assert problem["type"] == "/problems/read-model-unassigned", problem


# --- each role alone ----------------------------------------------------------------------


@pytest.fixture()
def broker() -> Iterator[Broker]:
    with Broker.start() as running:
        yield running


async def test_the_command_service_alone_sends_commands_and_has_no_reads(
    broker: Broker, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    command = start(broker, tmp_path, "command")
    try:
        assert health(command) == (200, {"status": "ready", "role": "command"})
        api = Api(session, command.url)
        account, k = await send_opening(api)
        async with Client(broker) as client:
            sent = await client.read("commands", lambda found: len(found) >= 1)
        assert [(c["type"], c["command_id"], c["account_id"]) for c in sent] == [
            ("CREATE_ACCOUNT", k, account)
        ]
        await has_nowhere_to_read(api, account)
    finally:
        command.stop()


async def test_the_event_processor_alone_decides_commands(
    broker: Broker, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    processor = start(broker, tmp_path, "processor")
    try:
        assert health(processor) == (200, {"status": "ready"})
        takes(processor, "commands", ALL)
        assert consumer_partitions(processor, "events") == set()
        api = Api(session, processor.url)
        account, k = await send_opening(api)
        [event] = await events_of(broker, k)
        assert (event["type"], event["account_id"], event["seq"]) == ("AccountCreated", account, 1)
        # No query worker in its group: reads have nowhere to go.
        await has_nowhere_to_read(api, account)
    finally:
        processor.stop()


async def test_the_query_service_alone_answers_and_says_processing_is_delayed(
    broker: Broker, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    query = start(broker, tmp_path, "query")
    try:
        status, body = health(query)
        assert (status, body["status"], body["processing"]) == (
            200,
            "processing-delayed",
            "delayed",
        )
        assert body["undecided_partitions"] == list(range(PARTITIONS))
        assert "not being decided" in body["detail"]
        takes(query, "events", ALL)
        assert consumer_partitions(query, "commands") == set()
        api = Api(session, query.url)
        account, k = await send_opening(api)
        assert_problem(await api.get(f"/accounts/{account}"), 404)
        assert_problem(await api.get(f"/commands/{k}"), 404)
    finally:
        query.stop()


# --- the roles together -------------------------------------------------------------------


@dataclass
class Split:
    broker: Any  # Broker or KafkaNode
    root: Path
    processor: Worker
    query: Worker
    command: Worker

    @property
    def workers(self) -> tuple[Worker, Worker, Worker]:
        return self.processor, self.query, self.command

    def restart(self, worker: Worker) -> None:
        """Start a SIGKILLed worker again, on its data directory."""
        worker.start()


def processing_ready(query: Worker) -> bool:
    status, body = health(query)
    return status == 200 and body["status"] == "ready"


def settled(workers: tuple[Worker, ...]) -> bool:
    """Every worker answers 200 on /health. The query worker's "ready" says the group
    gave a processor every partition of ``commands``; the processor itself may still be
    rebalancing or recovering then (on Apache Kafka the query worker's join moves the
    processor's partitions once more), so each one is asked."""
    return all(health(worker)[0] == 200 for worker in workers)


@pytest.fixture(scope="module", params=BROKER_KINDS)
def split(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Split]:
    """The three roles on one broker: Tansu, and an Apache Kafka node of the module's."""
    root = tmp_path_factory.mktemp("roles")
    with started_broker(request.param, request, root / "kafka") as broker:
        # The processor yields the cores, as README's "Priority" describes.
        processor = start(broker, root, "processor", BANKING_NICE=str(PROCESSOR_NICENESS))
        try:
            query = start(broker, root, "query")
            try:
                command = start(broker, root, "command", BANKING_QUERY_URL=query.url)
                try:
                    wait_for(lambda: processing_ready(query), "processing ready", SETTLE_TIMEOUT)
                    running = Split(broker, root, processor, query, command)
                    wait_for(lambda: settled(running.workers), "every role ready", SETTLE_TIMEOUT)
                    yield running
                finally:
                    command.stop()
            finally:
                query.stop()
        finally:
            processor.stop()


def apis(split: Split, session: aiohttp.ClientSession) -> dict[str, Api]:
    return {worker.role: Api(session, worker.url) for worker in split.workers}


async def test_the_roles_start_together_and_each_takes_its_own_topics(split: Split) -> None:
    takes(split.processor, "commands", ALL)
    takes(split.query, "events", ALL)
    assert consumer_partitions(split.processor, "events") == set()
    assert consumer_partitions(split.query, "commands") == set()
    assert health(split.query) == (200, {"status": "ready"})
    assert health(split.processor) == (200, {"status": "ready"})
    assert health(split.command) == (200, {"status": "ready", "role": "command"})
    # BANKING_NICE lowers every thread of the processor, and no other worker.
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(split.processor) == {max(PROCESSOR_NICENESS, own)}
    assert niceness(split.query) == niceness(split.command) == {own}


async def test_every_process_answers_every_route_and_reads_its_writes(
    split: Split, session: aiohttp.ClientSession
) -> None:
    by_role = apis(split, session)
    balance = 0
    account = await by_role["command"].open(new_id("split"), deposit=100)
    balance += 100
    for n, (role, api) in enumerate(sorted(by_role.items()), start=1):
        k = key()
        reply = await api.post(f"/accounts/{account}/deposits", {"amount": n}, idempotency_key=k)
        assert reply.status == 200, (role, reply)
        balance += n
        assert reply.body["events"][0]["balance"] == balance
        # Read at once, through every process: no retry.
        for reader, other in by_role.items():
            view = await other.account(account)
            assert view_state(view) == (balance, 2 + n, "OPEN", 0), (role, reader, view)
            outcome = await other.get(f"/commands/{k}")
            assert (outcome.status, outcome.body["status"]) == (200, "accepted"), (reader, outcome)
            history = await other.history(account)
            assert history["items"][0]["command_id"] == k
    # A rejection, and an unknown account, the same through every process.
    for role, api in by_role.items():
        reply = await api.post(
            f"/accounts/{account}/withdrawals", {"amount": 10**9}, idempotency_key=key()
        )
        assert_problem(reply, 422, "INSUFFICIENT_FUNDS")
        assert_problem(await api.get(f"/accounts/{new_id('nobody')}"), 404)
        assert (await api.get(f"/accounts/{account}/alerts")).status == 200, role
        assert (await api.get("/alerts")).status == 200, role


async def test_killing_the_query_service_leaves_commands_flowing(
    split: Split, session: aiohttp.ClientSession
) -> None:
    by_role = apis(split, session)
    account = await by_role["command"].open(new_id("noquery"), deposit=1_000)
    split.query.kill()
    try:
        sent = []
        for role in ("command", "processor"):
            for amount in (1, 2):
                k = key()
                reply = await by_role[role].post(
                    f"/accounts/{account}/withdrawals",
                    {"amount": amount},
                    idempotency_key=k,
                    wait=False,
                )
                assert (reply.status, reply.body["status"]) == (202, "pending"), (role, reply)
                sent.append(k)
        # Decided by the processor, with no query service anywhere.
        balances = []
        for k in sent:
            [event] = await events_of(split.broker, k)
            assert event["type"] == "MoneyWithdrawn", event
            balances.append(event["balance"])
        assert balances == [999, 997, 996, 994]
        # A wait with the query service gone runs out as pending, the command sent.
        k = key()
        reply = await by_role["command"].post(
            f"/accounts/{account}/deposits",
            {"amount": 6},
            idempotency_key=k,
            wait=False,
            params={"wait": "true", "timeout": "3"},
        )
        assert (reply.status, reply.body["status"]) == (202, "pending"), reply
        [event] = await events_of(split.broker, k)
        assert event["balance"] == 1_000
        problem = await by_role["command"].get(f"/accounts/{account}")
        assert problem.status in (503, 504), problem
    finally:
        split.restart(split.query)
    # Back, the query service has projected what was decided meanwhile.
    view = await eventually(
        lambda: by_role["command"].get(f"/accounts/{account}"),
        lambda reply: reply.status == 200 and reply.body["version"] == 7,
        timeout=SETTLE_TIMEOUT,
        what="the account after the query service's restart",
    )
    assert view.body["balance"] == 1_000


async def test_killing_the_event_processor_leaves_queries_answering(
    split: Split, session: aiohttp.ClientSession
) -> None:
    by_role = apis(split, session)
    account = await by_role["command"].open(new_id("noprocessor"), deposit=500)
    split.processor.kill()
    try:
        # Queries go on being answered, through the query service and the command service.
        for role in ("query", "command"):
            view = await by_role[role].account(account)
            assert view_state(view) == (500, 2, "OPEN", 0), (role, view)
        # Once the group has noticed, /health says so.
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            status, body = health(split.query)
            if status == 200 and body["status"] == "processing-delayed":
                break
            assert time.monotonic() < deadline, (status, body, split.query.log_tail())
            time.sleep(0.5)
        assert body["undecided_partitions"] == list(range(PARTITIONS))
        assert "not being decided" in body["detail"]
        # A command is taken, and stays undecided.
        k = key()
        reply = await by_role["command"].post(
            f"/accounts/{account}/deposits", {"amount": 5}, idempotency_key=k, wait=False
        )
        assert reply.status == 202, reply
        outcome = await by_role["query"].get(f"/commands/{k}")
        assert outcome.status == 404, outcome
        assert (await by_role["query"].account(account))["balance"] == 500
    finally:
        split.restart(split.processor)
    # Back, the processor decides it, and /health is ready again.
    await eventually(
        lambda: by_role["query"].get(f"/commands/{k}"),
        lambda reply: reply.status == 200 and reply.body["status"] == "accepted",
        timeout=SETTLE_TIMEOUT,
        what="the command after the processor's restart",
    )
    wait_for(lambda: processing_ready(split.query), "processing ready again", SETTLE_TIMEOUT)
    assert (await by_role["query"].account(account))["balance"] == 505


# --- a group of mixed roles -----------------------------------------------------------------


async def test_a_query_worker_joins_a_worker_of_every_role(
    broker: Broker, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """The way from one worker to the split: a query worker joins an ``all`` worker. The
    ``all`` worker keeps every partition of ``commands`` (no other member decides), the
    two share ``events``, and a write reads back at once through either."""
    everything = start(broker, tmp_path, "all")
    try:
        query = start(broker, tmp_path, "query")
        try:
            takes(everything, "commands", ALL)
            wait_for(
                lambda: (
                    consumer_partitions(query, "events")
                    and consumer_partitions(query, "events")
                    | consumer_partitions(everything, "events")
                    == ALL
                ),
                "events shared between the two",
                SETTLE_TIMEOUT,
            )
            shared = consumer_partitions(query, "events"), consumer_partitions(everything, "events")
            assert not shared[0] & shared[1], shared
            assert consumer_partitions(query, "commands") == set()
            wait_for(lambda: settled((everything, query)), "both ready", SETTLE_TIMEOUT)
            assert health(query) == (200, {"status": "ready"})
            by_role = {"all": Api(session, everything.url), "query": Api(session, query.url)}
            account = await by_role["query"].open(new_id("mixed"), deposit=10)
            balance = 10
            for n, (role, api) in enumerate(sorted(by_role.items()), start=1):
                reply = await api.post(
                    f"/accounts/{account}/deposits", {"amount": n}, idempotency_key=key()
                )
                assert reply.status == 200, (role, reply)
                balance += n
                for reader, other in by_role.items():
                    view = await other.account(account)
                    assert view_state(view) == (balance, 2 + n, "OPEN", 0), (role, reader)
        finally:
            query.stop()
    finally:
        everything.stop()
