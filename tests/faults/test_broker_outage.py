"""The broker unreachable: before the worker starts, and for a while under load.

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17).

On Kafka the outage under load is the node going down and coming back: stopped
(SIGTERM, a controlled shutdown) or killed (SIGKILL, a crash), and started again on its
data directory after a while; it keeps its ports, cluster id, records and committed
offsets, so the worker finds the same cluster again.

The embedded broker (Tansu) keeps everything in memory, so restarting it loses every
topic and offset: that is a new, empty cluster, not an outage. On Tansu the outage is
therefore simulated by pausing the broker process (SIGSTOP, then SIGCONT): connections
stay open but nothing answers, as with a broker that hangs or a network partition.
What happens on a real restart of the embedded broker (the worker's data directory must
be deleted) is documented in the README, section "The embedded broker".
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from banking_app.operations import embedded_broker
from support.brokers import BROKER_KINDS, kafka_node, started_broker
from support.cluster import Broker, Worker
from support.load import (
    EventLog,
    Producer,
    Workload,
    check_views,
    logs,
    settle,
    verify,
    wait_for_log,
)

pytestmark = pytest.mark.kafka

#: Seconds the broker is paused (Tansu) or down (Kafka, before it is started again):
#: longer than the worker's session timeout (10 s) and than the 10 s a POST waits for the
#: broker's acknowledgement.
PAUSE = 15.0


def broker_to_come(
    kind: str, request: pytest.FixtureRequest, directory: Path
) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    """A broker on a free port that nothing listens on yet, and how to start and stop it:
    Tansu, or a single Kafka node in ``directory``."""
    port = embedded_broker.free_port()  # nothing listens here yet
    if kind == "kafka":
        node = kafka_node(request, directory, port=port)

        def stop_node() -> None:
            node.stop()
            node.kill()

        return node, node.start, stop_node
    broker = Broker(port, process=None)  # type: ignore[arg-type]

    def start_tansu() -> None:
        broker.process = embedded_broker.start_tansu(port)

    def stop_tansu() -> None:
        process: subprocess.Popen[bytes] | None = broker.process
        if process is not None:
            embedded_broker.stop(process)

    return broker, start_tansu, stop_tansu


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_a_worker_started_before_its_broker_waits_for_it(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    broker, start_broker, stop_broker = broker_to_come(broker_kind, request, tmp_path / "kafka")
    port = broker.port
    worker = Worker(broker, tmp_path / "worker")
    worker.directory.mkdir()
    try:
        worker.start(wait=False)
        unreachable = f"Kafka at localhost:{port} is unreachable"
        # It says so clearly, and keeps retrying rather than exiting.
        await wait_for_log(worker, unreachable, count=3)
        assert "retrying in" in worker.log_path.read_text()
        assert worker.process is not None and worker.process.poll() is None
        assert worker.health() is None  # not serving yet

        await asyncio.to_thread(start_broker)
        await asyncio.to_thread(worker.wait_ready)
        await wait_for_log(worker, f"Kafka at localhost:{port} answers again")

        work = Workload("late", random.Random(5), accounts=4, duplicate_share=0.0)
        creations, deposits = work.opening()
        stream = work.stream(20)
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits, *stream])
            await settle(log, work.expected, broker)
            problems = log.outcome_problems(work.expected) + log.balance_problems(work.bank)
            assert not problems, "\n".join(problems) + logs(worker)
        await check_views(worker, work.bank)
    finally:
        worker.stop()
        stop_broker()


# ----------------------------------------------------------------- pause under load


def http_request(cmd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The HTTP API's path and body for a command of the workload."""
    kind, account = cmd["type"], cmd["account_id"]
    if kind == "CREATE_ACCOUNT":
        return "/accounts", {
            "account_id": account,
            "owner": cmd["owner"],
            "currency": cmd["currency"],
        }
    if kind == "DEPOSIT":
        return f"/accounts/{account}/deposits", {"amount": cmd["amount"]}
    if kind == "WITHDRAW":
        return f"/accounts/{account}/withdrawals", {"amount": cmd["amount"]}
    assert kind == "TRANSFER_MONEY", cmd
    return "/transfers", {
        "from_account_id": account,
        "to_account_id": cmd["to_account_id"],
        "amount": cmd["amount"],
    }


class HttpFeed:
    """POSTs commands one after another with ``Idempotency-Key: <command id>``; a 503
    (the broker did not acknowledge) or no answer is retried with the same key until
    the worker takes it (202, or the outcome of an earlier copy: 200 or 422)."""

    def __init__(self, worker: Worker, commands: list[dict[str, Any]], interval: float) -> None:
        self.worker, self.commands, self.interval = worker, commands, interval
        self.sent = 0
        self.unavailable: list[dict[str, Any]] = []  # 503 bodies
        self.failures: list[str] = []  # anything else unexpected
        self.task: asyncio.Task[None] | None = None

    def start(self) -> HttpFeed:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for cmd in self.commands:
                await self._post_until_accepted(session, cmd)
                self.sent += 1
                await asyncio.sleep(self.interval)

    async def _post_until_accepted(
        self, session: aiohttp.ClientSession, cmd: dict[str, Any]
    ) -> None:
        path, body = http_request(cmd)
        headers = {"Idempotency-Key": cmd["command_id"]}
        deadline = time.monotonic() + 120
        while True:
            try:
                async with session.post(
                    f"{self.worker.url}{path}", json=body, headers=headers
                ) as response:
                    text = await response.text()
                    # 202: sent; a key the bank already has an outcome for answers that
                    # outcome instead (200 accepted, 422 rejected) without sending again.
                    if response.status in (200, 202, 422):
                        return
                    if response.status == 503:
                        assert response.content_type == "application/problem+json", text
                        self.unavailable.append(await response.json(content_type=None))
                    else:
                        self.failures.append(f"{path} {body}: {response.status} {text}")
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{path} {body}: {exc!r} (retried)")
            assert time.monotonic() < deadline, f"{cmd} never accepted"
            await asyncio.sleep(1.0)

    async def reached(self, count: int) -> None:
        while self.sent < count:
            assert self.task is not None
            if self.task.done():
                self.task.result()
                break
            await asyncio.sleep(0.05)

    async def finished(self, timeout: float = 240) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout)


async def outage(broker: Any, kind: str) -> None:
    """The broker unreachable for ``PAUSE`` seconds, then back: ``paused`` (SIGSTOP, then
    SIGCONT), or a Kafka node ``stopped`` (SIGTERM) or ``killed`` (SIGKILL) and started
    again on its data directory (ready once it serves as a broker again)."""
    if kind == "paused":
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(PAUSE)
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        return
    await asyncio.to_thread(broker.stop if kind == "stopped" else broker.kill)
    assert not broker.running
    await asyncio.sleep(PAUSE)
    await asyncio.to_thread(broker.start)


@pytest.mark.parametrize(
    ("broker_kind", "kind"),
    # Tansu is paused rather than restarted: a restart empties it (see above).
    [("tansu", "paused"), ("kafka", "stopped"), ("kafka", "killed")],
    ids=["tansu-paused", "kafka-stopped", "kafka-killed"],
)
async def test_the_broker_down_under_load_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str, kind: str
) -> None:
    rng = random.Random(99)
    work = Workload("pause", rng, accounts=10)
    creations, deposits = work.opening()
    stream = work.stream(150)
    pause_at = rng.randint(30, 60)

    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        worker = Worker(broker, tmp_path / "worker")
        worker.directory.mkdir()
        try:
            await asyncio.to_thread(worker.start)
            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                feed = HttpFeed(worker, stream, interval=0.05).start()
                await feed.reached(pause_at)

                await outage(broker, kind)

                await feed.finished()
                assert worker.process is not None and worker.process.poll() is None, logs(worker)
                await settle(log, work.expected, broker, worker)
                problems = log.problems(work)
                assert not problems, "\n".join(problems[:50]) + logs(worker)

            unexpected = [f for f in feed.failures if "(retried)" not in f]
            assert not unexpected, unexpected
            for body in feed.unavailable:
                assert body["status"] == 503 and body["command_id"], body
            assert worker.process.poll() is None, logs(worker)
            await check_views(worker, work.bank)
            await verify(broker, tmp_path / "cli", worker)
        finally:
            worker.stop()
