"""A take's table writes: staged, read back, then stored in RocksDB with the changelog
offset they reach, in one write batch per partition (``banking_app.runtime.tables``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from banking_app.event_processor.tables import accounts_table
from banking_app.runtime.faust_app import app
from banking_app.runtime.topics import hash_partition


@pytest.fixture()
def rocksdb_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RocksDBStore:
    """The accounts table on a real RocksDB store in a temporary directory."""
    monkeypatch.setattr(RocksDBStore, "path", property(lambda self: tmp_path))
    store = RocksDBStore(
        "rocksdb://", app, accounts_table, key_serializer="raw", value_serializer="raw"
    )
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


def test_the_web_views_read_a_key_from_its_own_partition_and_never_a_staged_write(
    rocksdb_table: RocksDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = accounts_table
    own = hash_partition(b"dave", table.partitions)
    other = (hash_partition(b"erin", table.partitions) + 1) % table.partitions
    table.stage(b"dave", b"1", own)
    table.stage(b"erin", b"3", other)  # not where its bytes hash to
    table.store_staged({})
    table.stage(b"dave", b"2", own)  # a take in flight: not in the changelog yet

    assert table.stored(b"dave") == b"1"
    assert table.stored(b"nobody") is None

    # One lookup, in the key's partition: Faust's search through every partition's
    # database is needed only for a key that is not where it belongs (topics with more
    # partitions than configured), and still finds it.
    searched: list[bytes] = []
    faust_get = RocksDBStore._get
    monkeypatch.setattr(
        RocksDBStore, "_get", lambda self, key: searched.append(key) or faust_get(self, key)
    )
    assert table.stored(b"dave") == b"1"
    assert searched == []
    assert table.stored(b"erin") == b"3"
    assert searched == [b"erin"]
