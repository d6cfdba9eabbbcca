"""Where a worker's memory is, for ``/metrics``, and giving freed heap back to the system.

A worker's resident set is Python's objects, RocksDB (bounded by
``BANKING_ROCKSDB_MEMORY_MB``, ``runtime.rocksdb_memory``), and glibc's heap, where
the bytes of every record a take holds are allocated. A burst of large takes leaves
that heap mostly free but not returned: glibc gives back only the free space at the
top of each arena, so the resident set stays at the burst's peak (docs/BENCHMARKS.md,
"The opening burst"). ``trim`` asks glibc to return every free page
(``malloc_trim(0)``); ``BANKING_MALLOC_TRIM_SECONDS`` runs it on a timer.

Both read glibc through ``ctypes``; elsewhere (musl, macOS) they do nothing and the
gauges read 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
_FIELDS += ("uordblks", "fordblks", "keepcost")


class _Mallinfo2(ctypes.Structure):
    """glibc 2.33's ``struct mallinfo2``: every field a ``size_t``."""

    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallinfo2") or not hasattr(libc, "malloc_trim"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def heap_bytes() -> tuple[int, int]:
    """glibc's heap: (bytes in use, bytes free but still held), mmapped chunks counted
    as in use; (0, 0) without glibc."""
    libc = _libc()
    if libc is None:
        return 0, 0
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def trim() -> bool:
    """Return glibc's free pages to the system; True when some were."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def rss_bytes() -> int:
    """This process's resident set, from ``/proc`` (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
