"""The C heap's free space, as ``/metrics`` reports it, and given back by ``trim``.

A story with real allocations: many record-sized byte strings, most of them freed
while a few later ones stay, so glibc cannot give the space back by moving the top of
its heap. The free space shows as held, the RSS stays, and ``trim`` returns it. The
same story runs in a process on jemalloc, the allocator a worker is executed on where
it is installed (``operations.allocator``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from banking_app.operations.allocator import library
from banking_app.runtime import memory

MIB = 1 << 20

glibc_only = pytest.mark.skipif(memory.allocator() != "glibc", reason="glibc only")


@glibc_only
def test_freed_heap_stays_resident_until_trimmed() -> None:
    # 150 MiB in 3 KB values (above pymalloc's 512 bytes: glibc's), then a few more
    # above them, which pin the heap's top.
    values = [bytes(3000) for _ in range(50_000)]
    pinned = [bytes(3000) for _ in range(1_000)]
    in_use, _ = memory.heap_bytes()
    assert in_use >= 150 * MIB
    del values
    _, free = memory.heap_bytes()
    held = memory.rss_bytes()
    assert free >= 140 * MIB  # freed, but held by glibc
    assert memory.trim() is True
    assert memory.rss_bytes() <= held - 100 * MIB
    assert len(pinned) == 1_000


def test_rss_is_read() -> None:
    assert memory.rss_bytes() > 10 * MIB


#: The same story in a process started on jemalloc, as a worker is where it is installed.
ON_JEMALLOC = """
from banking_app.runtime import memory
MIB = 1 << 20
assert memory.allocator() == "jemalloc", memory.allocator()
values = [bytes(3000) for _ in range(50_000)]
pinned = [bytes(3000) for _ in range(1_000)]
in_use, _ = memory.heap_bytes()
assert in_use >= 150 * MIB, in_use
del values
in_use, free = memory.heap_bytes()
assert in_use < 50 * MIB and free >= 100 * MIB, (in_use, free)
held = memory.rss_bytes()
assert memory.trim() is True
assert memory.rss_bytes() <= held - 100 * MIB, (held, memory.rss_bytes())
assert memory.heap_bytes()[1] < 50 * MIB, memory.heap_bytes()
assert len(pinned) == 1_000
"""


@pytest.mark.skipif(not library(), reason="jemalloc (libjemalloc2) is not installed")
def test_jemalloc_s_heap_is_read_and_purged() -> None:
    # No background thread: the freed pages stay until purged, as glibc's until trimmed.
    env = {**os.environ, "LD_PRELOAD": library() or "", "MALLOC_CONF": "dirty_decay_ms:-1"}
    done = subprocess.run(
        [sys.executable, "-c", ON_JEMALLOC], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
