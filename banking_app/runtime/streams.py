"""Takes that end when their stream goes quiet, not after a fixed window.

Faust's ``take_events(max_, within)`` yields a take when it holds ``max_`` events or
``within`` seconds after it began waiting, whichever comes first. No window suits both
ends of the load:

- Under load the take fills only as fast as Faust hands events over (about 50 µs each),
  so in a window of 25 ms it held about 400 of the 1,000 it may, and the cost of each
  take (two broker round trips, a RocksDB write batch) was spread over fewer commands.
  A window of 100 ms filled takes to about 900 and ran deposits 8 to 17 % faster.
- A lone command waits out the whole window at each agent on its way (commands, then
  views, then outcomes; more for a transfer's legs): a longer window is added to every
  quiet-time request.

``QuietTakeStream.take_quiet`` yields a take as soon as no event arrived for ``quiet``
seconds (a few milliseconds), at ``max_`` events, or ``within`` after its first event.
Under load events keep arriving, so takes fill; a lone command waits ``quiet``, not
``within``.

A take is bounded in bytes as well (``max_bytes``, ``BANKING_BATCH_BYTES``): it ends at
the record whose value brings it to the budget. A record of the commands topic may be a
bundle of up to 256 KiB of legs (``banking_app.runtime.outbox.Bundles``), and counted as
one record each, a burst of 200,000 account openings made takes of a thousand bundles:
some 100,000 claims and answers in one take, 1.4 GiB of the worker's heap, and the event
loop held for tens of seconds, long enough for a group session to expire.

Acknowledgement differs from Faust's too: a take's events are acknowledged only when
the agent asks for the next take, that is once it has handled this one. Faust's
``take_events`` acknowledges in a ``finally``, so a take whose handling raised was
acknowledged anyway, and committed past, with every command in it left without an
outcome. Here a take the agent did not finish is never acknowledged; the agents retry a
failed take and stop the worker when it keeps failing (``banking_app.runtime.retries``),
so its records are read again after the restart. The acknowledgements give other tasks
their turns. Everything else is Faust's ``take_events`` (faust-streaming 0.15.3,
``faust/streams.py``): the buffer is closed while a take is handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from time import monotonic
from typing import Any

import faust
from faust.streams import _tracks_buffer_agen
from faust.types import EventT
from mode.utils.futures import notify

from banking_app.runtime import upstream
from banking_app.runtime.consumer import InOrderConsumer
from banking_app.runtime.liveness import watch
from banking_app.runtime.settings import settings
from banking_app.runtime.turns import taking_turns

#: Events acknowledged between two turns given to other tasks.
ACK_TURN = 64


class QuietTakeStream(faust.Stream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        upstream.check_instance(self)  # Faust's private attributes, as each stream is made

    @_tracks_buffer_agen
    async def take_quiet(
        self, max_: int, within: float, quiet: float, max_bytes: int | None = None
    ) -> AsyncGenerator[Sequence[EventT], None]:
        """Takes of at most ``max_`` events, or of the first events whose values reach
        ``max_bytes`` together: each yielded once ``quiet`` seconds pass without an
        event, or ``within`` seconds after its first event."""
        events: list[EventT] = []
        size = 0  # bytes of the values of ``events``
        full = asyncio.Event()
        arrived = asyncio.Event()
        consumed = asyncio.Event()
        consuming: asyncio.Future[Any] | None = None
        closed = False
        stream_enable_acks = self.enable_acks

        async def add_to_buffer(value: Any) -> Any:
            nonlocal consuming, size
            try:
                event = self.current_event
                if event is None:
                    raise RuntimeError("Take buffer found current_event is None")
                if consuming is not None:  # a take is being handled: wait for its end
                    try:
                        await consuming
                    finally:
                        consuming = None
                if closed or not admitted(event):
                    # Behind a record let go unhandled (or the takes are over): not
                    # taken now, and read again (banking_app.runtime.delivery).
                    let_go([event])
                    return value
                events.append(event)
                size += len(event.message.value or b"")
                if len(events) == 1:
                    arrived.set()
                if len(events) >= max_ or (max_bytes is not None and size >= max_bytes):
                    full.set()
                    consumed.clear()
                    await self.wait(consumed)  # type: ignore[arg-type]
            except asyncio.CancelledError:  # pragma: no cover
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        # The events are acknowledged here, when the take is done with (below).
        self.enable_acks = False
        self.add_processor(add_to_buffer)
        self._enable_passive(aiter(self.channel))  # type: ignore[arg-type]
        try:
            while not self.should_stop:
                if not events:
                    await self.wait_for_stopped(arrived)  # type: ignore[arg-type]
                    continue
                await self._until_quiet(events, full, within, quiet)
                consuming = self.loop.create_future()
                try:
                    yield list(events)
                except GeneratorExit:
                    # Closed while the agent held the take: its handling raised, or the
                    # agent is stopping. Not handled, so not acknowledged, so never
                    # committed, and let go: the records are read again, before any
                    # record behind them is taken.
                    closed = True
                    let_go(events)
                    events.clear()
                    raise
                finally:
                    # The agent asked for the next take: this one is handled.
                    # Acknowledging a take of 1,000 held the event loop for milliseconds:
                    # let the web views have their turns (banking_app.runtime.turns).
                    async for event in taking_turns(events, every=ACK_TURN):
                        await self.ack(event)
                    if events:
                        watch.handled(events[-1].message.topic, monotonic())
                    events.clear()
                    size = 0
                    arrived.clear()
                    notify(consuming)
                    full.clear()
                    consumed.set()
        finally:
            closed = True
            let_go(events)  # buffered for a take that never came
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)

    async def _until_quiet(
        self, events: list[EventT], full: asyncio.Event, within: float, quiet: float
    ) -> None:
        """Return when the take is full, silent for ``quiet`` seconds, or ``within`` old."""
        deadline = self.loop.time() + within
        count = len(events)
        while not full.is_set():
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return
            await self.wait_for_stopped(full, timeout=min(quiet, remaining))  # type: ignore[arg-type]
            if len(events) == count or self.should_stop:
                return
            count = len(events)


def let_go(events: Sequence[EventT]) -> None:
    """Events handed to a stream that will not be handled (an abandoned take, a take
    held by an agent that crashed, a record refused by ``admitted``).

    Faust's stop and rebalance wait (``Consumer.wait_empty``, faust-streaming 0.15.3,
    ``faust/transport/consumer.py``) until every message handed to a stream is
    acknowledged or gone from ``Consumer._unacked_messages``: these leave that set,
    still unacknowledged, so the commit stops below them. The in-order consumer
    (``InOrderConsumer.let_go``) also owes them again, so they are read again before
    any record behind them is taken; a plain Faust consumer (the agent unit tests)
    only forgets them.
    """
    if not events:
        return
    consumer = events[0].app.consumer
    messages = [event.message for event in events]
    if isinstance(consumer, InOrderConsumer):
        consumer.let_go(messages)
    else:
        for message in messages:
            consumer._unacked_messages.discard(message)


def admitted(event: EventT) -> bool:
    """May the agent take this event now? Always, but for the in-order consumer, which
    refuses a record behind one let go unhandled (``Cursors.admit``)."""
    consumer = event.app.consumer
    if isinstance(consumer, InOrderConsumer):
        return consumer.admit(event.message.tp, event.message.offset)
    return True


def takes(stream: faust.StreamT[Any]) -> AsyncGenerator[Sequence[EventT], None]:
    """An agent's stream in takes, with the worker's batch settings."""
    if not isinstance(stream, QuietTakeStream):
        raise TypeError(f"the app's Stream setting is not QuietTakeStream: {type(stream)}")
    return stream.take_quiet(
        settings.batch_size, settings.batch_window, settings.batch_quiet, settings.batch_bytes
    )
