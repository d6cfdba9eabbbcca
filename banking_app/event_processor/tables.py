"""The event processor's state: three RocksDB tables, each with its changelog topic.

``accounts`` holds one ``AccountRow`` per account id: balance, version and the
at-most-once bookkeeping, in one record so they are written together.
``command-offsets`` remembers, for every input id ever applied, the position it was
applied at, so a duplicate long after the original is still recognised.
``command-claims`` holds, for every public command id, its first claim: the
fingerprint of the command that used it first, and that command's account and
position (``banking_app.domain.command_ids``); it is keyed by command id, so it lives on
``partition(command_id)``, not on the account's.
All are written from the commands agent, so their changelog partitions line up with
the partitions of ``commands``.
"""

from __future__ import annotations

from banking_app.runtime.tables import new_table
from banking_app.runtime.topics import ACCOUNTS_TABLE, COMMAND_CLAIMS_TABLE, COMMAND_OFFSETS_TABLE

accounts_table = new_table(ACCOUNTS_TABLE)
command_offsets_table = new_table(COMMAND_OFFSETS_TABLE)
command_claims_table = new_table(COMMAND_CLAIMS_TABLE)
