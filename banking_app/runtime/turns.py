"""Long loops on the event loop that let the HTTP views have their turn.

The agents, the web views and the consumer share one event loop. A take of 500
records decided in one go holds it for tens of milliseconds, and a GET arriving
meanwhile waits that long (the benchmark's query p99). Yielding every few dozen
records bounds the wait without making the takes any smaller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

#: Items handled between two turns given to other tasks.
TURN = 16

T = TypeVar("T")


async def taking_turns(items: Iterable[T], every: int = TURN) -> AsyncIterator[T]:
    """The items, with a pause for other ready tasks after every ``every`` of them."""
    for index, item in enumerate(items, 1):
        yield item
        if index % every == 0:
            await asyncio.sleep(0)
