"""Tables restored from their changelogs in bulk, before the worker joins its group.

Faust's own recovery (faust-streaming 0.15.3, ``faust/tables/recovery.py``,
``Recovery._slurp_changelogs``) replays a changelog a record at a time: each record
goes through the worker's consumer, the conductor and a queue read under
``asyncio.wait_for``, and after each one the recovery checks whether it is done by
summing what is left over every partition. That costs about 200 µs a record here: 13
minutes for a bank of a million accounts (docs/BENCHMARKS.md). aiokafka alone reads the
same records some 40 times faster, and RocksDB takes a write batch of thousands at once.

So a starting worker first reads each table's changelog, every partition of it, from
the offset its local store has to the end the broker reports, with a plain consumer,
and writes the records to the partition's RocksDB exactly as Faust's
``Store.apply_changelog_batch`` writes them (the key to the value, a null value
deleting the key), a batch at a time. Each batch carries the partition's persisted
offset, the ``offset_key`` Faust's recovery reads back to know where to start. Faust's
recovery then runs as before and reads only what was written meanwhile, so the tables
hold exactly what Faust's recovery alone would have built.

Every partition, not only the worker's own: the assignment is known only once the
worker has joined its group, and Faust times each step of its recovery out after
``broker_request_timeout``, which a large restore would overrun. With one worker that
is the same work; with two and a standby replica each (Faust's default), each worker
keeps every partition anyway. Partitions the worker is not given are closed again and
left for a later assignment, which then starts from where they are.

Safe to die at any point: the write-ahead log is off while restoring, and the
memtables are flushed before a partition's database is handed to Faust. A process
killed mid-restore loses only the batches not yet flushed, each with its offset (a
batch is atomic), so the next start reads them again.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from rocksdict import WriteBatch, WriteOptions

from banking_app.runtime import upstream
from banking_app.runtime.faults import InjectedFault, faults
from banking_app.runtime.offsets import true_end_offsets

log = logging.getLogger(__name__)

#: Records a partition must lack before it is restored here rather than by Faust
#: (``BANKING_BULK_RESTORE``).
THRESHOLD = 1_000
#: Records read (and written as one batch per partition) per fetch.
FETCH_RECORDS = 20_000


@dataclass
class Progress:
    """What the bulk restore under way has left (``/health`` shows it)."""

    running: bool = False
    partitions_left: int = 0
    records_left: int = 0


#: This worker's bulk restore: one per process, as the worker starts.
progress = Progress()


@dataclass
class Span:
    """The records of one changelog partition its store lacks: offsets first..last."""

    tp: TopicPartition
    store: RocksDBStore
    first: int
    last: int
    written: int = 0
    #: The next offset to read.
    position: int = 0

    def __post_init__(self) -> None:
        self.position = self.first


def _no_wal() -> WriteOptions:
    options = WriteOptions()
    options.disable_wal = True
    return options


async def restore_tables(
    bootstrap: str, tables: Iterable[Any], *, true_ends: bool, threshold: int = THRESHOLD
) -> int:
    """Bring every RocksDB-backed table of ``tables`` up to its changelog's end; returns
    the records written. ``true_ends``: ask for the ends the way Tansu needs
    (``banking_app.runtime.offsets``)."""
    stores = {
        table.changelog_topic.get_topic_name(): table.data
        for table in tables
        if isinstance(table.data, RocksDBStore)
    }
    if not stores:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        # Changelogs are written outside transactions; read them as the worker does.
        isolation_level="read_committed",
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    upstream.check_instance(consumer)  # its client, asked for metadata in _plan
    await consumer.start()
    opened: list[tuple[RocksDBStore, int]] = []
    try:
        spans = await _plan(consumer, bootstrap, stores, opened, true_ends, threshold)
        if spans:
            progress.running = True
            started = time.monotonic()
            total = sum(span.last - span.first + 1 for span in spans)
            log.info("restoring %d changelog records of %d partitions", total, len(spans))
            await _read(consumer, spans)
            written = sum(span.written for span in spans)
            log.info("restored %d records in %.1f s", written, time.monotonic() - started)
            return written
        return 0
    finally:
        progress.running = False
        await consumer.stop()
        for store, partition in opened:
            _flush_and_close(store, partition)
        for store in stores.values():  # the ones Faust had open already
            for db in store._dbs.values():
                db.flush()


async def _plan(
    consumer: AIOKafkaConsumer,
    bootstrap: str,
    stores: dict[str, RocksDBStore],
    opened: list[tuple[RocksDBStore, int]],
    true_ends: bool,
    threshold: int,
) -> list[Span]:
    """The partitions at least ``threshold`` records behind their changelog's end."""
    # The consumer's own metadata, with every changelog's partitions: ``topics()`` only
    # returns a copy, and the bootstrap's metadata request (an empty topic list) names
    # no topic on Apache Kafka (Tansu answered with every topic), so the plan found no
    # partition and restored nothing there. A client that subscribes to nothing asks for
    # every topic when forced to update (aiokafka 0.14.0, ``AIOKafkaClient._topics``).
    await consumer._client.force_metadata_update()
    tps = [
        TopicPartition(topic, partition)
        for topic in stores
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not tps:
        return []
    ends = await consumer.end_offsets(tps)
    if true_ends:
        ends = await true_end_offsets(bootstrap, ends)
    starts = await consumer.beginning_offsets(tps)
    spans = []
    for tp in tps:
        store = stores[tp.topic]
        if tp.partition not in store._dbs:
            opened.append((store, tp.partition))
        persisted = store.persisted_offset(tp)  # type: ignore[arg-type]
        first = max(starts[tp], -1 if persisted is None else persisted + 1)
        last = ends[tp] - 1
        if last - first + 1 >= threshold:
            spans.append(Span(tp, store, first, last))
    return spans


async def _read(consumer: AIOKafkaConsumer, spans: list[Span]) -> None:
    by_tp = {span.tp: span for span in spans}
    consumer.assign(list(by_tp))
    for span in spans:
        consumer.seek(span.tp, span.first)
    options = _no_wal()
    remaining = set(by_tp)
    while remaining:
        _report(spans, remaining)
        fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=FETCH_RECORDS)
        for tp, records in fetched.items():
            _write(by_tp[tp], records, options)
        for tp in list(remaining):
            by_tp[tp].position = await consumer.position(tp)
            # Past the end: compaction gaps and transaction markers leave no record.
            if by_tp[tp].position > by_tp[tp].last:
                remaining.discard(tp)
    _report(spans, remaining)


def _report(spans: list[Span], remaining: set[TopicPartition]) -> None:
    progress.partitions_left = len(remaining)
    progress.records_left = sum(max(0, span.last + 1 - span.position) for span in spans)


def _write(span: Span, records: list[Any], options: WriteOptions) -> None:
    """``records`` into the partition's store, as Faust's ``apply_changelog_batch``
    would, with the offset of the last one in the same batch."""
    batch = WriteBatch(raw_mode=True)
    last, count = None, 0
    for record in records:
        if record.offset > span.last:
            break
        if record.value is None:
            batch.delete(record.key)
        else:
            batch.put(record.key, record.value)
        last, count = record.offset, count + 1
    if last is None:
        return
    batch.put(span.store.offset_key, str(last).encode())
    span.store._db_for_partition(span.tp.partition).write(batch, options)
    span.written += count
    if faults.active:
        _crash_if_asked()


def _crash_if_asked() -> None:
    """The fault tests' crash mid-restore: SIGKILL, so that nothing is flushed."""
    try:
        faults.check("restore")
    except InjectedFault:
        os.kill(os.getpid(), signal.SIGKILL)


def _flush_and_close(store: RocksDBStore, partition: int) -> None:
    """Flush what was written without the write-ahead log; close a database Faust had
    not opened, so that it opens the partitions it is given, as it would have."""
    db = store._dbs.pop(partition, None)
    if db is not None:
        db.flush()
        db.close()
