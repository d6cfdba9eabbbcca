"""The command side's state: two RocksDB tables, each with its changelog topic.

``accounts`` holds one ``AccountRow`` per account id: balance, version and the
at-most-once bookkeeping, in one record so they are written together.
``command_offsets`` remembers, for every input id ever applied, the offset it was
applied at, so a duplicate long after the original is still recognised.
Both are written from the commands agent, so their changelog partitions line up with
the partitions of ``commands``.
"""

from __future__ import annotations

from banking_app.app import app
from banking_app.settings import settings

accounts_table = app.Table(
    "accounts",
    default=None,
    key_type=str,
    value_type=bytes,
    partitions=settings.partitions,
)
command_offsets_table = app.Table(
    "command-offsets",
    default=None,
    key_type=str,
    value_type=bytes,
    partitions=settings.partitions,
)
