"""The worker's CPU priority: ``BANKING_NICE``, for an event processor sharing its cores.

On one machine the event processor and the query service want the same cores for
different ends: the processor works through a backlog as fast as it can, a read has a
client waiting on it. Under a deposit load that keeps two cores busy, a query worker's
event loop waited for a core more than half as long as it ran (the main thread's
run-queue time in ``/proc``), and a read that arrives while its worker waits for a core
waits too. A processor at niceness 10 lets the query worker run as soon as it has work
and takes the cores back when it has none: on the embedded broker, in five paired runs,
the split's query p99 fell from 15.2 to 13.4 ms (medians) for 5 % fewer deposits. On
Apache Kafka on the same cores the one pair run at 1,000,000 accounts went the other
way (the processor yields to the broker's JVM too): so no role is lowered unless
``BANKING_NICE`` says so (docs/BENCHMARKS.md, "Priority").

``BANKING_NICE`` (0 to 19) lowers any role; a worker never raises its own priority, so
a worker started under ``nice -n 15`` keeps 15. Linux keeps a niceness per thread, so
every thread the worker already has is lowered, and the ones it starts later inherit
it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SETTING = "BANKING_NICE"
#: The niceness measured for an event processor beside a query worker (README).
PROCESSOR_NICENESS = 10
LOWEST = 19


class PriorityError(ValueError):
    """``BANKING_NICE`` is not a niceness from 0 to 19."""


def niceness(environ: Mapping[str, str]) -> int:
    """The niceness a worker runs at: ``BANKING_NICE``, or none (0), whatever its role,
    until a processor at ``PROCESSOR_NICENESS`` is measured to help on Apache Kafka as
    on Tansu."""
    raw = environ.get(SETTING, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise PriorityError(
            f"{SETTING} must be an integer from 0 to {LOWEST}, got {raw!r}"
        ) from None
    if not 0 <= value <= LOWEST:
        raise PriorityError(f"{SETTING} must be from 0 to {LOWEST}, got {value}")
    return value


def lower(value: int) -> None:
    """Lower every thread of this process to ``value``, never raising one."""
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        tid = int(task)
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < value:
                os.setpriority(os.PRIO_PROCESS, tid, value)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


def apply(environ: Mapping[str, str], argv: list[str]) -> None:
    """Lower a worker's priority as ``niceness`` says; other commands run as they are."""
    if "worker" not in argv:
        return
    try:
        value = niceness(environ)
    except PriorityError as exc:
        raise SystemExit(str(exc)) from None
    if value:
        lower(value)
