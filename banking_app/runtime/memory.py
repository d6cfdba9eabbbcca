"""Where a worker's memory is, for ``/metrics``, and giving freed heap back to the system.

A worker's resident set is Python's objects, RocksDB (bounded by
``BANKING_ROCKSDB_MEMORY_MB``, ``runtime.rocksdb_memory``), and the C heap, where
the bytes of every record a take holds are allocated. The heap is jemalloc's where the
worker was started on it (``operations.allocator``, the default where it is
installed), glibc's otherwise. A burst of large takes leaves glibc's heap mostly free
but not returned: glibc gives back only the free space at the top of each arena, so the
resident set stays at the burst's peak (docs/BENCHMARKS.md, "The opening burst").
``trim`` asks the allocator to return every free page (glibc's ``malloc_trim(0)``,
jemalloc's purge of every arena); ``BANKING_MALLOC_TRIM_SECONDS`` runs it on a timer.

Both read the allocator through ``ctypes``; elsewhere (musl, macOS) they do nothing and
the gauges read 0.
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


#: jemalloc's ``MALLCTL_ARENAS_ALL``: an arena index that means every arena.
_ALL_ARENAS = 4096


@cache
def _jemalloc() -> ctypes.CDLL | None:
    """The process's symbols when jemalloc is its allocator (preloaded), else None."""
    process = ctypes.CDLL(None)
    if not hasattr(process, "mallctl"):
        return None
    process.mallctl.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return process


def _jemalloc_stat(jemalloc: ctypes.CDLL, name: bytes) -> int:
    value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
    if jemalloc.mallctl(name, ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        return 0
    return value.value


def allocator() -> str:
    """The C heap's allocator: ``jemalloc``, ``glibc``, or ``other``."""
    if _jemalloc() is not None:
        return "jemalloc"
    return "glibc" if _libc() is not None else "other"


def heap_bytes() -> tuple[int, int]:
    """The C heap: (bytes in use, bytes free but still resident); (0, 0) with neither
    allocator. glibc counts its mmapped chunks as in use; jemalloc's free is what it
    holds resident beyond its allocations (dirty pages, fragments, its own metadata)."""
    jemalloc = _jemalloc()
    if jemalloc is not None:
        epoch = ctypes.c_uint64(1)
        size = ctypes.c_size_t(ctypes.sizeof(epoch))
        # Its statistics are a snapshot, refreshed when the epoch is advanced.
        jemalloc.mallctl(
            b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size
        )
        in_use = _jemalloc_stat(jemalloc, b"stats.allocated")
        return in_use, max(_jemalloc_stat(jemalloc, b"stats.resident") - in_use, 0)
    libc = _libc()
    if libc is None:
        return 0, 0
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def trim() -> bool:
    """Return the allocator's free pages to the system; True when glibc returned some,
    or jemalloc's purge succeeded."""
    jemalloc = _jemalloc()
    if jemalloc is not None:
        purge = f"arena.{_ALL_ARENAS}.purge".encode()
        return jemalloc.mallctl(purge, None, None, None, 0) == 0
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def rss_bytes() -> int:
    """This process's resident set, from ``/proc`` (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
