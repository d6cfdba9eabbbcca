"""How late the event loop runs what is due: the wait a request or a take meets first.

The agents, the consumer and the web views share one event loop, and on a machine
whose cores are all busy the loop also waits for a core. Neither shows in an agent's
lag or a view's own latency until requests queue, and a starved query worker looked
healthy: on the 2-core machine the split's query worker spent more of its late time
waiting for a core than running (docs/BENCHMARKS.md, "Priority"). So the worker wakes
every ``INTERVAL`` and records how late it woke in ``banking_event_loop_lag_seconds``.
A late wake-up is the loop held by a callback that ran long, or the process waiting for
a core; the worker's CPU time (``process_cpu_seconds_total``) tells the two apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Histogram

from banking_app.runtime import metrics

#: Seconds between wake-ups: ten a second cost nothing measurable and catch a held loop.
INTERVAL = 0.1

lag_seconds = Histogram(
    "banking_event_loop_lag_seconds",
    "How late the event loop woke a task due every 0.1 s: the time a request or take "
    "that became ready then waited to run",
    registry=metrics.registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


async def measure(
    observe: Callable[[float], None] = lag_seconds.observe,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.perf_counter,
    rounds: int | None = None,
) -> None:
    """Record how late each wake-up comes, forever (or ``rounds`` times, for tests)."""
    done = 0
    while rounds is None or done < rounds:
        started = clock()
        await sleep(INTERVAL)
        observe(max(clock() - started - INTERVAL, 0.0))
        done += 1
