"""The worker's memory allocator: jemalloc where it is installed, glibc's malloc otherwise.

A worker's heap holds two kinds of allocation side by side: RocksDB's memtable arenas
and cached blocks, which live for minutes, and the bytes of the records a take handles,
which live for milliseconds. glibc's malloc puts them in the same arenas and can return
a page only when nothing on it is alive, so a burst (a million accounts opened) leaves
the heap mostly free but held: at 1,000,000 accounts the event processor's peak held
280 MiB of free heap (docs/BENCHMARKS.md). RocksDB on glibc's malloc is known to
fragment this way (MyRocks' measurements, smalldatum.blogspot.com, 2018-04), and the
usual answer is jemalloc, which keeps allocations of different sizes apart and returns
freed pages after a decay. docs/BENCHMARKS.md has the figures for this bank.

An allocator is chosen when the process starts, before Python's first ``malloc``: by
``LD_PRELOAD``. So ``banking-app worker`` executes itself again, once, with jemalloc
preloaded (``worker_environment``); the other commands are short and run as they are.
``BANKING_ALLOCATOR=glibc`` keeps glibc's malloc. Without the library (Debian's
``libjemalloc2``) the worker runs on glibc's malloc; ``banking_memory_allocator`` in
``/metrics`` says which one it runs on (``runtime.memory.allocator``).
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping

SETTING = "BANKING_ALLOCATOR"
CHOICES = ("jemalloc", "glibc")
#: Set in the environment of the process executed again, so it never loops.
CHOSEN = "BANKING_ALLOCATOR_CHOSEN"
#: jemalloc's options unless ``MALLOC_CONF`` says otherwise: a background thread returns
#: freed pages while the worker is idle, not only when it next allocates.
DEFAULT_CONF = "background_thread:true"


class AllocatorError(ValueError):
    """``BANKING_ALLOCATOR`` names no allocator the worker knows."""


def library() -> str | None:
    """jemalloc's shared library as the dynamic linker finds it, or None."""
    return ctypes.util.find_library("jemalloc")


def worker_environment(
    environ: Mapping[str, str], argv: list[str], found: str | None = None
) -> dict[str, str] | None:
    """The environment to execute ``argv`` again with, jemalloc preloaded; None to run
    it as it is (not a worker, glibc chosen, jemalloc already there or not installed).

    ``found`` is jemalloc's library (default: ``library()``).
    """
    choice = environ.get(SETTING, "jemalloc") or "jemalloc"
    if choice not in CHOICES:
        raise AllocatorError(f"{SETTING}={choice!r}: expected one of {', '.join(CHOICES)}")
    if "worker" not in argv or choice == "glibc" or environ.get(CHOSEN):
        return None
    preload = environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return None
    found = found if found is not None else library()
    if not found:
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = f"{found} {preload}".strip()
    env.setdefault("MALLOC_CONF", DEFAULT_CONF)
    env[CHOSEN] = "jemalloc"
    return env


def for_workers(environ: Mapping[str, str]) -> str:
    """The allocator a worker started with ``environ`` runs on: ``jemalloc`` or ``glibc``
    (what the benchmark reports)."""
    if "jemalloc" in environ.get("LD_PRELOAD", ""):
        return "jemalloc"
    return "glibc" if worker_environment(environ, ["worker"]) is None else "jemalloc"


def execute_as_worker(argv: list[str], executable: str) -> None:
    """Execute the worker again on jemalloc when ``worker_environment`` says so (this
    function then does not return); otherwise return and let it run as it is."""
    try:
        env = worker_environment(os.environ, argv)
    except AllocatorError as exc:
        raise SystemExit(str(exc)) from None
    if env is not None:
        os.execve(executable, [executable, "-m", "banking_app", *argv], env)
