"""The command side's state: two RocksDB tables, each with its changelog topic.

``accounts`` holds one ``AccountRow`` per account id: balance, version and the
at-most-once bookkeeping, in one record so they are written together.
``command_offsets`` remembers, for every input id ever applied, the offset it was
applied at, so a duplicate long after the original is still recognised.
Both are written from the commands agent, so their changelog partitions line up with
the partitions of ``commands``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event  # no public setter; see acting_as
from faust.types import EventT

from banking_app import codec
from banking_app.app import app
from banking_app.produce import Outgoing, produce
from banking_app.settings import settings


class BatchedTable(faust.Table):
    """A Table whose changelog writes are produced together, by ``flush_changelogs``.

    Faust produces each changelog write on its own: a FutureMessage through its
    producer buffer, and on every acknowledgement a RocksDB write of the partition's
    persisted offset. The agents write their tables once per take and wait for the
    writes anyway before their inputs are acknowledged, so here a write is only noted,
    and the take's writes are sent in one go with one persisted offset per partition:
    the same records, in the same order, for a fraction of the work (docs/BENCHMARKS.md).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsent: list[tuple[int | None, bytes, bytes | None]] = []
        BATCHED.append(self)

    def on_key_set(self, key: Any, value: Any) -> None:
        # Keys and values are raw bytes (key_type and value_type bytes, raw codecs);
        # the partition is the current record's, as Faust's own path takes it.
        self.unsent.append((self.partition_for_key(key), key, value))
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self.unsent.append((self.partition_for_key(key), key, None))
        self._sensor_on_del(self, key)


#: Every BatchedTable, in the order they were made.
BATCHED: list[BatchedTable] = []


async def flush_changelogs() -> None:
    """Produce every table's noted changelog writes; return once the broker has them all."""
    pending: list[Outgoing] = []
    tables: dict[str, BatchedTable] = {}
    for table in BATCHED:
        if table.unsent:
            unsent, table.unsent = table.unsent, []
            topic = table.changelog_topic.get_topic_name()
            tables[topic] = table
            pending += [Outgoing(topic, key, value, partition) for partition, key, value in unsent]
    if not pending:
        return
    for tp, offset in (await produce(pending)).items():
        tables[tp.topic].data.set_persisted_offset(tp, offset)


def drop_unsent_changelogs() -> None:
    """Forget noted writes (agent unit tests, which run without a broker)."""
    for table in BATCHED:
        table.unsent.clear()


def new_table(name: str) -> faust.Table:
    """A RocksDB table of JSON values whose keys are raw UTF-8 bytes.

    ``key_type=bytes`` makes Faust write the changelog key as the raw bytes (its
    default for ``str`` is JSON, with quotes), so the changelog partition, the
    partition ``table_route`` computes from a URL segment, and the partition of the
    topic the table is fed from all hash the same bytes.
    """
    return app.tables.add(
        BatchedTable(
            app,
            name=name,
            beacon=app.tables.beacon,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
        )
    )


@contextmanager
def acting_as(event: EventT) -> Iterator[None]:
    """Read and write tables as if ``event`` were the stream's current event.

    Faust picks a table key's partition (its RocksDB file and its changelog partition)
    from the current event, which it sets only while a stream iterates one event at a
    time; a batch from ``take_events`` has none. The agents write each key under the
    record it came from, exactly as the one-at-a-time path would.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def get_json(table: faust.Table, key: str) -> Any:
    stored = table.get(codec.key(key))
    return codec.loads(stored) if stored is not None else None


def put_json(table: faust.Table, key: str, value: Any) -> None:
    table[codec.key(key)] = codec.dumps(value)


accounts_table = new_table("accounts")
command_offsets_table = new_table("command-offsets")
