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
from banking_app.settings import settings


def new_table(name: str) -> faust.Table:
    """A RocksDB table of JSON values whose keys are raw UTF-8 bytes.

    ``key_type=bytes`` makes Faust write the changelog key as the raw bytes (its
    default for ``str`` is JSON, with quotes), so the changelog partition, the
    partition ``table_route`` computes from a URL segment, and the partition of the
    topic the table is fed from all hash the same bytes.
    """
    return app.Table(
        name, default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions
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
