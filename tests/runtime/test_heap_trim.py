"""glibc's free heap, as ``/metrics`` reports it, and given back by ``trim``.

A story with real allocations: many record-sized byte strings, most of them freed
while a few later ones stay, so glibc cannot give the space back by moving the top of
its heap. The free space shows as held, the RSS stays, and ``trim`` returns it.
"""

from __future__ import annotations

import pytest

from banking_app.runtime import memory

MIB = 1 << 20

pytestmark = pytest.mark.skipif(memory.heap_bytes() == (0, 0), reason="glibc only")


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
