"""RocksDB's memory: every database of a worker shares one budget.

Faust opens each table partition with a block cache and memtables of its own, so
forty databases could hold forty times what one may. Written well past the budget,
several databases opened with ``BoundedOptions`` hold no more than the budget together.
"""

from __future__ import annotations

from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from banking_app.runtime.rocksdb_memory import MIB, bounded, usage_bytes

BUDGET_MB = 16


def test_several_databases_stay_within_one_budget(tmp_path: Path) -> None:
    options = bounded(RocksDBOptions(use_rocksdict=True), BUDGET_MB)
    assert options.write_buffer_size == RocksDBOptions().write_buffer_size  # Faust's, kept
    databases = [options.open(tmp_path / f"p{n}.db") for n in range(4)]
    value = b"v" * 1000
    try:
        for index in range(24_000):  # 96 MB written, six times the budget
            databases[index % 4][index.to_bytes(8, "big")] = value
        for index in range(0, 24_000, 7):  # and read back, through the block cache
            assert databases[index % 4][index.to_bytes(8, "big")] == value
        assert 0 < usage_bytes(BUDGET_MB) <= BUDGET_MB * MIB * 1.1
    finally:
        for db in databases:
            db.close()
