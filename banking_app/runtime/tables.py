"""Tables the agents write a take at a time: RocksDB with a changelog topic each.

Replaces, for the bank's own tables, the per-write path of faust-streaming 0.15.3's
``faust/tables/base.py`` (``Collection.on_key_set``/``send_changelog``) and
``faust/stores/rocksdb.py`` (``Store._set``, ``set_persisted_offset``), and reads the
store's private ``_dbs``/``_db_for_partition``: see ``BatchedTable``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import faust
from faust.stores.rocksdb import Store as RocksDBStore
from rocksdict import WriteBatch

from banking_app.runtime import codec, rocksdb_memory, upstream
from banking_app.runtime.faults import faults
from banking_app.runtime.faust_app import app
from banking_app.runtime.produce import Outgoing, produce
from banking_app.runtime.settings import settings
from banking_app.runtime.topics import hash_partition

Writes = dict[bytes, bytes | None]


class BatchedTable(faust.Table):
    """A Faust Table the agents read and write a take at a time, in their own order.

    Faust's path for ``table[key] = value`` costs, per write, a RocksDB put with its own
    write-ahead-log ``write()`` call (the largest single item in the worker's profile),
    a changelog FutureMessage through the producer buffer, and on every acknowledgement
    another RocksDB put for the partition's persisted offset; ``table.get`` is two
    lookups. Here an agent stages its take's writes (``stage``), which it reads back
    itself (``read``, one lookup), and ``flush_changelogs`` then produces them, and once
    the broker has them writes each partition's share and its persisted offset as one
    RocksDB write batch. The same records reach the same changelog partitions in the
    same order, and the local store never holds a write its changelog lacks
    (docs/BENCHMARKS.md has the figures).

    The table stays Faust's: its changelog, recovery, standbys and ``table_route`` are
    untouched, and the web views read it with ``get_json`` as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: partition → key → value (None: delete), written in insertion order.
        self.staged: dict[int, Writes] = {}

    def _new_store(self) -> Any:
        store = super()._new_store()
        upstream.check_instance(store)  # the store's private attributes read here
        if isinstance(store, RocksDBStore) and settings.rocksdb_memory_mb:
            # One memory budget for every database of the worker, before any is opened.
            store.rocksdb_options = rocksdb_memory.bounded(store.rocksdb_options)
        return store

    def partition_of(self, key: bytes) -> int:
        """The partition ``key`` lives in: the one its bytes hash to (``new_table``)."""
        return hash_partition(key, self.partitions or settings.partitions)

    def stage(self, key: bytes, value: bytes | None, partition: int) -> None:
        writes = self.staged.setdefault(partition, {})
        writes.pop(key, None)  # keep the order of the writes, the last one last
        writes[key] = value

    def read(self, key: bytes, partition: int) -> bytes | None:
        """The value of ``key`` in ``partition``, staged writes first."""
        writes = self.staged.get(partition)
        if writes is not None and key in writes:
            return writes[key]
        store = self.data
        if isinstance(store, RocksDBStore):
            return store._db_for_partition(partition).get(key)  # type: ignore[no-any-return]
        return store.data.get(key)  # type: ignore[attr-defined,no-any-return]

    def stored(self, key: bytes) -> bytes | None:
        """The value of ``key`` in the local store, staged writes aside (the web views).

        Faust's ``table.get`` searches every partition's database, twice (``in``, then
        ``[]``): a quarter of a query's cost in the worker's profile. A key lives in the
        partition its bytes hash to (``new_table``), so that one database is read first;
        a key not found there is looked up Faust's way, which finds it even where the
        topics have more partitions than ``BANKING_PARTITIONS`` says.
        """
        store = self.data
        if isinstance(store, RocksDBStore):
            db = store._dbs.get(self.partition_of(key))
            value = db.get(key) if db is not None else None
            if value is not None:
                return value  # type: ignore[no-any-return]
        return self.get(key)  # type: ignore[no-any-return]

    def local_items(self, partitions: Iterable[int]) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value this worker stores in ``partitions`` (staged writes aside),
        for a view that scans a table rather than looking a key up."""
        store = self.data
        if isinstance(store, RocksDBStore):
            for partition in partitions:
                db = store._dbs.get(partition)
                if db is None:
                    continue
                for key, value in db.items():
                    if key != store.offset_key:
                        yield key, value
            return
        wanted = set(partitions)
        for key, value in list(store.data.items()):  # type: ignore[attr-defined]
            if self.partition_of(key) in wanted:
                yield key, value

    def store_staged(self, offsets: dict[int, int]) -> None:
        """Move the staged writes into the local store, with each partition's changelog
        offset (``offsets``) in the same write batch."""
        staged, self.staged = self.staged, {}
        store = self.data
        if not isinstance(store, RocksDBStore):  # the memory store of agent unit tests
            for writes in staged.values():
                for key, value in writes.items():
                    if value is None:
                        store.data.pop(key, None)  # type: ignore[attr-defined]
                    else:
                        store.data[key] = value  # type: ignore[attr-defined]
            return
        for partition, writes in staged.items():
            batch = WriteBatch(raw_mode=True)
            for key, value in writes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            if partition in offsets:
                batch.put(store.offset_key, str(offsets[partition]).encode())
            store._db_for_partition(partition).write(batch)


async def flush_changelogs(tables: Iterable[BatchedTable], fault: str | None = None) -> None:
    """Produce the tables' staged writes to their changelogs; once the broker has them
    all, store them locally (``BatchedTable.store_staged``).

    A failure in between leaves the writes in the changelogs only: the take is handled
    again, stages the same writes and produces them again (a compacted changelog keeps
    the last), so nothing is doubled. ``fault`` injects one there (the fault tests).
    """
    pending: list[Outgoing] = []
    by_topic: dict[str, BatchedTable] = {}
    for table in tables:
        if table.staged:
            topic = table.changelog_topic.get_topic_name()
            by_topic[topic] = table
            pending += [
                Outgoing(topic, key, value, partition)
                for partition, writes in table.staged.items()
                for key, value in writes.items()
            ]
    if not pending:
        return
    offsets: dict[str, dict[int, int]] = {topic: {} for topic in by_topic}
    for tp, offset in (await produce(pending)).items():
        offsets[tp.topic][tp.partition] = offset
    if fault is not None:
        faults.check(fault)
    for topic, table in by_topic.items():
        table.store_staged(offsets[topic])


def store_staged(tables: Iterable[BatchedTable]) -> None:
    """Store staged writes without producing them (agent unit tests: no broker)."""
    for table in tables:
        table.store_staged({})


def new_table(name: str) -> BatchedTable:
    """A RocksDB table of JSON values whose keys are raw UTF-8 bytes.

    ``key_type=bytes`` makes Faust write the changelog key as the raw bytes (its
    default for ``str`` is JSON, with quotes), so the changelog partition, the
    partition ``table_route`` computes from a URL segment, and the partition of the
    topic the table is fed from all hash the same bytes.
    """
    table = BatchedTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
    )
    app.tables.add(table)
    return table


def get_json(table: BatchedTable, key: str) -> Any:
    """The stored value of ``key`` (the web views, outside a take)."""
    stored = table.stored(codec.key(key))
    return codec.loads(stored) if stored is not None else None


def read_json(table: BatchedTable, key: str, partition: int) -> Any:
    """The value of ``key`` as an agent sees it during a take: its staged writes first."""
    stored = table.read(codec.key(key), partition)
    return codec.loads(stored) if stored is not None else None


def stage_json(table: BatchedTable, key: str, value: Any, partition: int) -> None:
    table.stage(codec.key(key), codec.dumps(value), partition)
