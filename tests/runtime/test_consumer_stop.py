"""A worker that crashes stops without waiting for its consumer thread.

When a take keeps failing, the worker crashes on purpose (``runtime.retries``). mode
then marks every service crashed at once, the consumer thread among them, and the
thread shuts itself down: it stops serving calls and leaves the group. The consumer's
own stop comes later and commits once more; a commit sent to the stopped thread was
never answered, and the worker hung instead of exiting (seen on Kafka, now and then).
"""

from __future__ import annotations

import asyncio

from faust.types import TP

from banking_app.runtime.faust_app import app

#: Far longer than a refused commit takes; a commit that waits on the thread never ends.
PATIENCE = 10.0


def fresh_consumer() -> object:
    """A consumer of the app's kind, not started, so its thread serves no calls: as a
    thread that has shut itself down."""
    return app.transport.create_consumer(
        callback=app.topics.on_message,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
    )


async def test_after_a_crash_the_last_commit_is_skipped_not_waited_for() -> None:
    consumer = fresh_consumer()
    consumer._thread._crash(RuntimeError("a take failed every attempt"))  # type: ignore[attr-defined]

    committed = await asyncio.wait_for(
        consumer._commit({TP("events", 0): 3}),  # type: ignore[attr-defined]
        PATIENCE,
    )

    assert committed is False


async def test_without_a_crash_the_commit_goes_to_the_consumer_thread() -> None:
    consumer = fresh_consumer()
    sent: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return True

    consumer._thread.commit = commit  # type: ignore[attr-defined]

    assert await consumer._commit({TP("events", 0): 3}) is True  # type: ignore[attr-defined]
    assert sent == [{TP("events", 0): 3}]
