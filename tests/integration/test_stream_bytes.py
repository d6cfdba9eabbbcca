"""A byte bound on what the consumer hands over (``BANKING_STREAM_BUFFER_KB``).

A worker with a bound of 16 KiB a partition (a few dozen commands, less than one
bundle of claim legs) takes a burst of openings, deposits, withdrawals, transfers and
closes. Its partitions are held and fetched again many times over, and every command
still has the reference bank's one outcome, every balance is the reference's and the
books balance: holding a partition loses, doubles and reorders nothing.
"""

from __future__ import annotations

import random
import re
import urllib.request
from pathlib import Path

import pytest

from support.api import running_workers
from support.brokers import BROKER_KINDS, started_broker
from support.load import EventLog, Producer, Workload, settled_as_expected

BOUND = {"BANKING_STREAM_BUFFER_KB": "16"}


def holds(url: str) -> dict[str, float]:
    """``banking_stream_holds_total`` by topic, from the worker's ``/metrics``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found = re.findall(r'banking_stream_holds_total\{topic="([^"]+)"\} (\S+)', text)
    return {topic: float(value) for topic, value in found}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_a_burst_through_a_tight_byte_bound_has_every_outcome_once(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("bytes", random.Random(16), accounts=60)
    creations, deposits = work.opening()
    stream = work.mixed(1500, closes=3)

    with (
        started_broker(broker_kind, request, tmp_path / "kafka") as broker,
        running_workers(broker, tmp_path, BOUND) as [worker],
    ):
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits])
            await producer.send_all(stream, burst=True)
            await settled_as_expected(log, work, broker, worker)
        held = holds(worker.url)

    # The bound was reached on the commands topic (claim bundles, saga legs) and on
    # the events the projections read, and each time fetching resumed.
    assert held.get("commands", 0) >= 1, held
    assert held.get("events", 0) >= 1, held
