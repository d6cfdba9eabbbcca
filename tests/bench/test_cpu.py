"""The benchmark's CPU accounting: a process and everything it started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cpu import tree_seconds

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

#: A grandchild that burns a second of CPU, under a parent that only waits for it.
BURN = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 1: pass"
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])"


def test_cpu_seconds_count_the_children_a_process_started() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, BURN])
    try:
        deadline = time.monotonic() + 60
        while tree_seconds([parent.pid]) < 0.5:  # the grandchild's: the parent idles
            assert parent.poll() is None, "the burn ended before it was counted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    assert tree_seconds([2**22 + 1]) == 0.0  # above Linux's largest pid
