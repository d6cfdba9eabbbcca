"""A worker killed with SIGKILL in the middle of a steady stream of commands.

Twenty accounts in two currencies are opened and funded; then a background task sends
a few hundred deposits, withdrawals and transfers (some refused, some to missing
accounts or in the other currency so they are refunded, and about one in ten a re-send
of an earlier command under the same command id) at a steady pace. At a random point of
the stream (seeded) the worker is killed with SIGKILL and restarted while the stream
goes on: on the same data directory (and killed a second time while it catches up on
what arrived meanwhile), or on a new, empty one (its tables then come back from the
changelogs alone).

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17).

When everything is quiet: every command has exactly one terminal outcome, the one the
reference model (``support.load.ReferenceBank``) expects; the balances folded from the
event log and those the worker answers over HTTP equal the reference; nothing is in
flight; and ``replay --verify`` finds the log, the command side's table and the read
model in agreement.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Broker, Worker
from support.load import (
    EventLog,
    Feed,
    Producer,
    Workload,
    check_views,
    logs,
    settle,
    verify,
)

pytestmark = pytest.mark.kafka

STREAM = 400


def new_worker(broker: Broker, directory: Path) -> Worker:
    directory.mkdir(parents=True)
    return Worker(broker, directory)


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
@pytest.mark.parametrize(
    ("seed", "data_dir", "interval"),
    [(11, "same", 0.1), (37, "new", 0.05)],
    ids=["same-data-dir-killed-twice", "new-empty-data-dir"],
)
async def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    seed: int,
    data_dir: str,
    interval: float,
    broker_kind: str,
) -> None:
    """``same``: killed at a random point of the stream, restarted on its data directory,
    and killed again a random moment after it is back (while it catches up on what
    arrived meanwhile), then restarted again. ``new``: killed once and replaced by a
    worker on a new, empty data directory. The stream goes on throughout (``interval``
    seconds between commands: the restarts take a while, and the kills should land while
    commands are still arriving)."""
    rng = random.Random(seed)
    work = Workload(f"crash{seed}", rng)
    creations, deposits = work.opening()
    stream = work.stream(STREAM)
    kill_at = rng.randint(STREAM // 8, STREAM // 3)
    second_kill_after = rng.uniform(0.0, 3.0)  # seconds after the first restart is ready

    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        first = new_worker(broker, tmp_path / "worker")
        workers = [first]
        try:
            await asyncio.to_thread(first.start)
            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                feed = Feed(producer, stream, interval).start()

                await feed.reached(kill_at)
                first.kill()
                if data_dir == "same":
                    last = first
                    await asyncio.to_thread(first.start)
                    await asyncio.sleep(second_kill_after)
                    first.kill()
                    await asyncio.to_thread(first.start)
                else:
                    last = new_worker(broker, tmp_path / "replacement")
                    workers.append(last)
                    await asyncio.to_thread(last.start)
                await feed.finished()

                await settle(log, work.expected, broker, *workers)
                problems = log.problems(work)
                assert not problems, "\n".join(problems[:50]) + logs(*workers)

            assert last.process is not None and last.process.poll() is None, logs(last)
            await check_views(last, work.bank)
            await verify(broker, tmp_path / "cli", *workers)
        finally:
            for worker in workers:
                worker.stop()
