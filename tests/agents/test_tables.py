"""A take's table writes: staged, read back, then stored in RocksDB with the changelog
offset they reach, in one write batch per partition (``banking_app.tables``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from banking_app.app import app
from banking_app.tables import accounts_table


@pytest.fixture()
def rocksdb_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RocksDBStore:
    """The accounts table on a real RocksDB store in a temporary directory."""
    monkeypatch.setattr(RocksDBStore, "path", property(lambda self: tmp_path))
    store = RocksDBStore("rocksdb://", app, accounts_table)
    monkeypatch.setattr(accounts_table, "_data", store)
    monkeypatch.setattr(accounts_table, "staged", {})
    return store


def test_staged_writes_are_read_back_then_stored_with_their_changelog_offset(
    rocksdb_table: RocksDBStore,
) -> None:
    table, changelog = accounts_table, accounts_table.changelog_topic.get_topic_name()
    table.stage(b"alice", b"1", 3)
    table.stage(b"bob", b"2", 3)
    table.stage(b"alice", b"3", 3)  # the take's last write wins
    table.stage(b"carol", b"4", 5)

    assert table.read(b"alice", 3) == b"3"
    assert rocksdb_table._db_for_partition(3).get(b"alice") is None  # not before the ack

    table.store_staged({3: 41})  # the changelog acknowledged partition 3 up to offset 41

    assert table.staged == {}
    assert table.read(b"alice", 3) == b"3"
    assert rocksdb_table._db_for_partition(3).get(b"bob") == b"2"
    assert rocksdb_table.persisted_offset(TP(changelog, 3)) == 41
    assert rocksdb_table._db_for_partition(5).get(b"carol") == b"4"
    assert rocksdb_table.persisted_offset(TP(changelog, 5)) is None

    table.stage(b"bob", None, 3)
    table.store_staged({3: 42})

    assert table.read(b"bob", 3) is None
    assert rocksdb_table.persisted_offset(TP(changelog, 3)) == 42
