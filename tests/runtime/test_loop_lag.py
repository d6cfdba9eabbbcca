"""The event loop's lateness: a loop held by a long callback shows as lag."""

from __future__ import annotations

import asyncio
import time

from banking_app.runtime import loop_lag


async def test_a_held_loop_is_seen_late() -> None:
    seen: list[float] = []
    watching = asyncio.create_task(loop_lag.measure(seen.append, rounds=3))
    await asyncio.sleep(loop_lag.INTERVAL / 2)
    time.sleep(0.3)  # a callback that holds the loop: the wake-up due meanwhile waits
    await watching
    assert len(seen) == 3
    assert seen[0] >= 0.2  # the 0.3 s hold, less what was left of the interval
    assert all(lag >= 0.0 for lag in seen)


async def test_an_early_wake_up_counts_as_on_time() -> None:
    ticks = iter([0.0, loop_lag.INTERVAL - 0.01])
    seen: list[float] = []

    async def no_wait(_: float) -> None:
        return None

    await loop_lag.measure(seen.append, sleep=no_wait, clock=lambda: next(ticks), rounds=1)
    assert seen == [0.0]
