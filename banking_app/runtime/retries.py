"""A failed take is retried, and a take that keeps failing stops the worker.

Faust restarts an agent whose body raised, and the take's records, already handed
over, were then never handled: with Faust's ``take_events`` they were even acknowledged
and committed. Here (with ``QuietTakeStream``, which acknowledges only handled takes)
an agent hands each take to ``until_handled``:

- a failure is logged, counted (``banking_take_failures_total``), the take's staged
  table writes are dropped, and the take is handled again from the start after a
  backoff (``BANKING_TAKE_RETRY_BACKOFF`` doubling up to 5 s). Handling again is
  harmless: ``decide`` is deterministic and every input is applied at most once, so
  events already published are published again identically, and readers dedupe them.
- when the worker is stopping, or a rebalance has begun, it is not tried again: it
  is abandoned (``streams.let_go``), ``TakeInterrupted`` is raised, and the take stays
  unacknowledged. Faust's stop and
  rebalance wait for every record handed to the agents to be acknowledged or dropped
  (``Consumer.wait_empty``), so a retrying take would hold them up for a minute; the
  records are read again from the committed offset after the restart or rebalance.
- after ``BANKING_TAKE_ATTEMPTS`` attempts the worker stops with the error (exit code
  not 0), loudly, without acknowledging the take. A process supervisor restarts it, and
  the records come again from the last committed offset. Stopping the whole worker is
  the way to stop the partition: a take may span all of them.

Per-input failures that would recur on every attempt (a record that cannot be decided)
are not this module's: the agents isolate those themselves and dead-letter the input
with its reason, so the rest of the take goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from banking_app.runtime import metrics
from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF = 5.0


class TakeAbandoned(RuntimeError):
    """A take failed every attempt; the worker stops without acknowledging it."""


class TakeInterrupted(RuntimeError):
    """A failed take is not retried: the worker is stopping or rebalancing."""


def backoff(attempt: int, first: float) -> float:
    """Seconds to wait after the ``attempt``-th failure: doubling, at most 5 s."""
    return float(min(first * 2 ** (attempt - 1), MAX_BACKOFF))


async def until_handled(
    handle: Callable[[], Awaitable[T]],
    *,
    agent: str,
    records: int,
    discard: Callable[[], None],
    stop_worker: Callable[[BaseException], Awaitable[Any]],
    stopping: Callable[[], bool] = lambda: False,
    abandon: Callable[[], None] = lambda: None,
    attempts: int | None = None,
) -> T:
    """``handle()``'s result, retried on failure; after the last attempt, stop."""
    attempts = attempts or settings.take_attempts
    for attempt in range(1, attempts + 1):
        try:
            return await handle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            discard()
            metrics.take_failures_total.labels(agent).inc()
            if attempt == attempts:
                log.critical(
                    "%s: a take of %d records failed %d times (%r); stopping the worker "
                    "without acknowledging it, so it is read again after a restart",
                    agent,
                    records,
                    attempts,
                    exc,
                )
                abandoned = TakeAbandoned(f"{agent}: take failed {attempts} times: {exc!r}")
                await stop_worker(abandoned)
                raise abandoned from exc
            if stopping():
                log.warning(
                    "%s: a take of %d records failed (%r) while the worker is stopping or "
                    "rebalancing; leaving it unacknowledged, to be read again",
                    agent,
                    records,
                    exc,
                )
                abandon()
                raise TakeInterrupted(f"{agent}: {exc!r}") from exc
            delay = backoff(attempt, settings.take_retry_backoff)
            log.warning(
                "%s: a take of %d records failed (attempt %d of %d): %r; retrying in %.2f s",
                agent,
                records,
                attempt,
                attempts,
                exc,
                delay,
                exc_info=exc,
            )
            deadline = asyncio.get_running_loop().time() + delay
            while not stopping() and (left := deadline - asyncio.get_running_loop().time()) > 0:
                await asyncio.sleep(min(left, 0.1))
    raise AssertionError("unreachable")  # pragma: no cover


def tried_twice(
    step: Callable[[], T], what: str, not_retried: tuple[type[Exception], ...] = ()
) -> T:
    """``step()``, tried once more when it raises (except ``not_retried``).

    For the pure steps of a take (decoding, deciding, folding one input): a failure
    that comes again on the second try would come every time, so the caller sets the
    input aside instead of retrying the whole take for it.
    """
    try:
        return step()
    except not_retried:
        raise
    except Exception as exc:
        log.warning("%s failed (%r); trying once more", what, exc)
    return step()


def folded_or_skipped(fold: Callable[[Any], T], message: Any, agent: str) -> T | None:
    """``fold(message)``, tried twice; None for a record that fails both times.

    For an agent that folds events into state of its own (the projections, the alert
    rules): folding is pure, so a record that fails twice fails every time. It is logged
    and counted (``banking_processing_failures_total`` under ``agent``) and skipped, so
    it never holds up its neighbours.
    """
    try:
        return tried_twice(lambda: fold(message), f"{agent}: folding {message.offset}")
    except Exception as exc:
        log.error(
            "%s: skipping %s[%s]@%s: folding it failed twice: %r",
            agent,
            message.topic,
            message.partition,
            message.offset,
            exc,
            exc_info=exc,
        )
        metrics.processing_failures_total.labels(agent).inc()
        return None


def drop_staged(tables: Iterable[Any]) -> Callable[[], None]:
    """A ``discard`` for ``until_handled``: forget the tables' staged writes."""

    def discard() -> None:
        for table in tables:
            table.staged = {}

    return discard


def stopping_or_rebalancing() -> bool:
    """True once the worker is stopping, or while Faust has suspended the flow of
    records for a rebalance."""
    return bool(app.should_stop or not app.flow_control.is_active())
