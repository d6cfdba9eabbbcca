"""RocksDB's memory, bounded by one budget for the whole worker (``BANKING_ROCKSDB_MEMORY_MB``).

faust-streaming 0.15.3 opens every table partition's database with options of its own
(``faust/stores/rocksdb.py``, ``RocksDBOptions.as_options``): a block cache of up to
2 GiB each, and up to three 64 MiB memtables each. A worker holds some forty databases
(five tables of eight partitions, standbys aside), so nothing bounds their sum: the
block caches grow with the data read, and the memtables with the data written.

Here every database of the worker shares one LRU block cache of the budget, and one
write buffer manager whose memtables are charged to that same cache, so memtables,
data blocks, and the index and filter blocks (kept in the cache too) stay within the
budget together. ``BoundedOptions`` replaces ``RocksDBOptions.as_options`` for the
bank's tables (``BatchedTable._new_store``); everything else about the options is
Faust's.
"""

from __future__ import annotations

from functools import cache

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from banking_app.runtime.settings import settings

MIB = 1 << 20
#: The share of the budget the memtables may take before RocksDB flushes them.
MEMTABLE_SHARE = 0.5


@cache
def shared(budget_mb: int) -> tuple[rocksdict.Cache, rocksdict.WriteBufferManager]:
    """The one block cache and write buffer manager of a budget (made on first use)."""
    budget = budget_mb * MIB
    block_cache = rocksdict.Cache(budget)
    memtables = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
        int(budget * MEMTABLE_SHARE), False, block_cache
    )
    return block_cache, memtables


class BoundedOptions(RocksDBOptions):
    """Faust's options, with the worker's shared cache and write buffer manager."""

    #: The budget in MiB; every database opened with the same budget shares it.
    budget_mb: int

    def as_options(self) -> rocksdict.Options:
        """Faust's options, with the worker's write buffer manager and a table factory
        that uses the shared cache (Faust's would make a cache of its own)."""
        options = super().as_options()
        if not self.use_rocksdict:  # python-rocksdb: Faust's own, unbounded
            return options
        block_cache, memtables = shared(self.budget_mb)
        options.set_write_buffer_manager(memtables)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(block_cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


def bounded(options: RocksDBOptions, budget_mb: int | None = None) -> BoundedOptions:
    """``options`` as ``BoundedOptions``, every setting kept, within ``budget_mb``
    (default ``BANKING_ROCKSDB_MEMORY_MB``)."""
    copy = BoundedOptions.__new__(BoundedOptions)
    copy.__dict__.update(vars(options))
    copy.budget_mb = settings.rocksdb_memory_mb if budget_mb is None else budget_mb
    return copy


def usage_bytes(budget_mb: int) -> int:
    """What the budget's cache holds now, memtables charged to it included."""
    block_cache, _ = shared(budget_mb)
    return block_cache.get_usage()  # type: ignore[no-any-return]


def opened_usage_bytes() -> int | None:
    """What the worker's budget holds, or None before a database opened with it (a
    worker without tables, or with Faust's options)."""
    if shared.cache_info().currsize == 0:
        return None
    return usage_bytes(settings.rocksdb_memory_mb)
