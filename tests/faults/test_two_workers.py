"""Two workers share the partitions; one stops under load; the other takes over.

Both workers run against the same broker with their own data directories and web ports.
Under a steady stream of deposits, withdrawals and transfers, one is stopped (SIGTERM:
it leaves the group; SIGKILL: the group notices when its session times out). The
survivor must take its partitions over: every command still gets exactly one outcome,
the survivor answers ``GET /accounts/{id}`` for the accounts the stopped worker owned
(with the right final balance), and ``replay --verify`` passes with balances equal to
the reference model.

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from banking_app.runtime.topics import partition_for
from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Worker
from support.load import (
    EventLog,
    Feed,
    Producer,
    ReferenceBank,
    Workload,
    check_views,
    get_json,
    logs,
    settle,
    verify,
)

pytestmark = pytest.mark.kafka

STREAM = 300
INTERVAL = 0.03
PARTITIONS = 8
#: The read model's table: its partitions are the accounts' partitions.
VIEWS_TOPIC = "banking-app-account-views-changelog"


async def owned_partitions(worker: Worker, timeout: float = 90) -> dict[str, set[int]]:
    """Which worker (by URL) holds which partitions of the account views, as the
    worker's router says once the group is stable and both workers are in it."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        status, body = await get_json(f"{worker.url}/router/")
        seen = (status, body)
        if status == 200 and isinstance(body, dict):
            # {worker url: {changelog topic: [its active partitions]}}
            owners = {
                url.rstrip("/"): set(topics.get(VIEWS_TOPIC, ()))
                for url, topics in body.items()
                if isinstance(topics, dict)
            }
            if len(owners) == 2 and all(owners.values()):
                return owners
        await asyncio.sleep(0.5)
    raise AssertionError(f"no stable assignment over two workers after {timeout} s: {seen}")


async def both_ready(workers: list[Worker], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = await asyncio.gather(*(asyncio.to_thread(w.health) for w in workers))
        if all(status == 200 for status in statuses):
            return
        assert time.monotonic() < deadline, f"workers not ready: {statuses}\n{logs(*workers)}"
        await asyncio.sleep(0.5)


def on_partitions(bank: ReferenceBank, partitions: set[int]) -> ReferenceBank:
    """The reference restricted to the accounts that live on ``partitions``."""
    subset = ReferenceBank()
    for account, currency in bank.currency.items():
        if partition_for(account.encode(), PARTITIONS) in partitions:
            subset.currency[account] = currency
            subset.balance[account] = bank.balance[account]
    return subset


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_the_survivor_takes_over_the_stopped_workers_partitions(
    tmp_path: Path, request: pytest.FixtureRequest, sig: signal.Signals, broker_kind: str
) -> None:
    rng = random.Random(int(sig))
    work = Workload(f"two{int(sig)}", rng)
    creations, deposits = work.opening()
    stream = work.stream(STREAM)
    stop_at = rng.randint(STREAM // 4, STREAM // 2)

    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        first = Worker(broker, tmp_path / "first")
        second = Worker(broker, tmp_path / "second")
        workers = [first, second]
        for worker in workers:
            worker.directory.mkdir()
        try:
            await asyncio.to_thread(first.start)
            await asyncio.to_thread(second.start)
            await both_ready(workers)
            owners = await owned_partitions(first)
            # Stop the worker that joined second: both own partitions by now.
            victim, survivor = second, first
            victim_partitions = owners[f"http://localhost:{victim.web_port}"]
            assert victim_partitions and len(victim_partitions) < PARTITIONS, owners

            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                feed = Feed(producer, stream, INTERVAL).start()
                await feed.reached(stop_at)
                await asyncio.to_thread(victim.stop, sig)
                await feed.finished()

                await settle(log, work.expected, broker, *workers)
                problems = log.problems(work)
                assert not problems, "\n".join(problems[:50]) + logs(*workers)

            assert survivor.process is not None and survivor.process.poll() is None
            # First the accounts the stopped worker owned, then every account.
            theirs = on_partitions(work.bank, victim_partitions)
            assert theirs.balance, "the stopped worker owned no account"
            await check_views(survivor, theirs)
            await check_views(survivor, work.bank)
            await verify(broker, tmp_path / "cli", *workers)
        finally:
            for worker in workers:
                worker.stop()
