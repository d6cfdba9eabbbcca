"""Tables restored in bulk hold exactly what Faust's own recovery builds.

A worker runs a mixed workload and stops, on Tansu and on an Apache Kafka node. Then the
same changelogs are recovered into empty data directories twice: by Faust's recovery
alone (``BANKING_BULK_RESTORE=0``) and in bulk (``banking_app.runtime.restore``, every
partition). Every key of every table partition, the persisted offsets among them, must
be the same. A worker killed half-way through its bulk restore
(``BANKING_FAULTS=restore@n``: a SIGKILL, with the write-ahead log off) and started
again must build the same. Then more commands arrive while a copy of a recovered
directory sits idle, and that copy, restored in bulk from its persisted offsets, must
again equal a directory recovered by Faust alone.
"""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest
from rocksdict import AccessType, Options, Rdict

from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Broker, Worker
from support.load import EventLog, Producer, Workload, all_committed, settle

BULK_EVERYTHING = {"BANKING_BULK_RESTORE": "1"}
FAUST_ONLY = {"BANKING_BULK_RESTORE": "0"}
#: A SIGKILL at the 20th of some 40 partition batches (five tables, eight partitions).
CRASH = {"BANKING_FAULTS": "restore@20"}
CRASH_TIMEOUT = 120


def contents(directory: Path) -> dict[str, dict[bytes, bytes]]:
    """Every RocksDB database a worker's data directory holds, read raw: table
    partition (its path) → key → value."""
    found = {}
    for path in sorted(directory.rglob("*.db")):
        if not path.is_dir():
            continue
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            found[str(path.relative_to(directory))] = dict(db.items())
        finally:
            db.close()
    return found


def recovered(broker: Broker, directory: Path, env: dict[str, str]) -> Worker:
    """A worker started on ``directory`` (ready once its tables are recovered), stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    worker = Worker(broker, directory, env=env)
    worker.start()
    worker.stop()
    return worker


async def run_workload(broker: Broker, worker: Worker, work: Workload, count: int) -> None:
    """``count`` more commands of ``work`` (the accounts opened first), through ``worker``,
    started for them and stopped once every one has its outcome and the group has
    committed every input: a worker started later has nothing left to handle, so it
    writes nothing, and two recoveries read the same changelogs."""
    worker.directory.mkdir(exist_ok=True)
    worker.start()
    try:
        await _sent_and_settled(broker, worker, work, count)
        await all_committed(broker)
    finally:
        worker.stop()


async def _sent_and_settled(broker: Broker, worker: Worker, work: Workload, count: int) -> None:
    async with Producer(broker) as producer, EventLog(broker) as log:
        if not work.sent:
            creations, deposits = work.opening()
            await producer.send_all([*creations, *deposits])
        await producer.send_all(work.stream(count))
        await settle(log, work.expected, broker, worker)


def assert_same(faust: Path, bulk: Path) -> None:
    by_faust, in_bulk = contents(faust), contents(bulk)
    assert sorted(by_faust) == sorted(in_bulk)
    assert sum(len(keys) for keys in by_faust.values()) > 1000  # a real workload
    for database, keys in by_faust.items():
        assert in_bulk[database] == keys, database


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_bulk_restore_builds_what_faust_s_recovery_builds(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("bulk", random.Random(5), accounts=60)
    with started_broker(broker_kind, request, tmp_path / "broker") as broker:
        source = Worker(broker, tmp_path / "source")
        await run_workload(broker, source, work, 1500)

        by_faust = recovered(broker, tmp_path / "faust", FAUST_ONLY)
        in_bulk = recovered(broker, tmp_path / "bulk", BULK_EVERYTHING)
        assert "restored" in in_bulk.log_path.read_text()
        assert "restored" not in by_faust.log_path.read_text()
        assert_same(by_faust.directory, in_bulk.directory)

        # Killed mid-restore, then started again on what it left.
        crashing = Worker(broker, tmp_path / "crashed", env={**BULK_EVERYTHING, **CRASH})
        crashing.directory.mkdir()
        crashing.start(wait=False)
        assert crashing.process is not None
        assert crashing.process.wait(CRASH_TIMEOUT) == -signal.SIGKILL
        assert "injecting a fault at restore" in crashing.log_path.read_text()
        again = recovered(broker, crashing.directory, BULK_EVERYTHING)
        assert_same(by_faust.directory, again.directory)

        # A directory left behind while the bank went on: restored from its offsets.
        shutil.copytree(in_bulk.directory, tmp_path / "behind")
        await run_workload(broker, source, work, 800)
        caught_up = recovered(broker, tmp_path / "behind", BULK_EVERYTHING)
        by_faust_again = recovered(broker, tmp_path / "faust-again", FAUST_ONLY)
        assert_same(by_faust_again.directory, caught_up.directory)
