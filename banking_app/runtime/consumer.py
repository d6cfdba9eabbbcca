"""Faust's aiokafka consumer, delivering each partition's records in order, and leaner.

In order: the records of every topic whose offsets Faust commits (the topics the agents
consume) reach the agents in offset order, none left out (``banking_app.runtime.delivery`` says
why and how). Faust's own "already read" drop and its gap booking are not used for
those topics, since both can make a record disappear after a rebalance; changelog
records keep Faust's handling, which table recovery relies on.

Leaner: Faust's fetch loop hands each record over inside ``wait_first(callback,
suspend_flow.wait())``, two tasks and an ``asyncio.wait`` per record, which the profile
of a deposit load put at a quarter of the worker's event loop. The loop here checks
the suspend flag instead: a record fetched while the flow is suspended (a rebalance
has begun) is not handed over, as in Faust, and recovery reads it again after the seek
to the committed offsets.

Upstream code replaced or read (faust-streaming 0.15.3, mode-streaming 0.7.1, aiokafka
0.14.0, pinned in pyproject.toml):

- ``faust/transport/consumer.py``: ``Consumer._drain_messages`` (the fetch loop, which
  ``Fetcher._fetcher`` calls by name) is replaced; it reads ``_read_offset``,
  ``_commit_every``, ``_n_acked`` and ``consumer_stopped_errors`` as Faust's loop does,
  and calls ``_add_gap`` to let commits pass offsets that retention deleted.
  ``seek``, ``seek_to_committed`` and ``on_partitions_revoked``/``_assigned`` are
  extended to keep the cursors. ``ack`` and ``on_buffer_drop`` are extended, and
  ``on_buffer_full`` called, to bound the bytes handed over per partition
  (``banking_app.runtime.flow``, ``BANKING_STREAM_BUFFER_KB``).
- ``faust/transport/drivers/aiokafka.py``: ``AIOKafkaConsumerThread._ensure_consumer``
  (the aiokafka consumer, to seek it) and ``earliest_offsets``.
- ``mode/services.py``: ``Service._stopped`` of the consumer and the fetcher, as Faust's
  loop reads it, and ``Service._crashed`` of the consumer thread, before a commit
  (``ThreadDelegateConsumer._commit``, extended); ``mode/threads.py``:
  ``QueueServiceThread.call_thread``.
- ``aiokafka/consumer/subscription_state.py``: ``AIOKafkaConsumer._subscription`` and
  the partition state behind it (``_position``), because aiokafka's public
  ``position()`` waits until there is a position, and the stall check must not.

``banking_app.runtime.upstream`` checks all of these at import and at start, so a rename
in an upgrade stops the worker with its name instead of turning the safety net off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from time import monotonic
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from mode import Service, ServiceT

from banking_app.runtime import upstream
from banking_app.runtime.delivery import Action, Cursors
from banking_app.runtime.flow import Window
from banking_app.runtime.metrics import stream_holds_total
from banking_app.runtime.offsets import ReadableProbe
from banking_app.runtime.settings import settings

log = logging.getLogger(__name__)

#: Records handed over between two yields to the event loop. Faust yields every 10; 50
#: let the agents' takes fill and ran a transfer load about 20 % faster, and the agents
#: take their own turns (``banking_app.runtime.turns``) for the web views (docs/BENCHMARKS.md).
YIELD_EVERY = 50


class InOrderConsumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        upstream.check_instance(self)  # Faust's private attributes, as the worker starts
        self._cursors = Cursors()
        self._readable = ReadableProbe(settings.bootstrap_servers)
        #: Where reading each partition began at the last seek to the committed offsets.
        self._read_from: dict[TP, int] = {}
        #: Bytes handed over per partition, within ``BANKING_STREAM_BUFFER_KB`` (``flow``).
        self._window = Window(settings.stream_buffer_kb << 10)

    def owed(self, tp: TP) -> int | None:
        """The next offset of ``tp`` owed to its agent (``None`` before the first seek)."""
        return self._cursors.owed(tp)

    def admit(self, tp: TP, offset: int) -> bool:
        """May an agent take this handed-over record now (``Cursors.admit``)?"""
        if not self._in_order(tp.topic):
            return True
        return self._cursors.admit(tp, offset, monotonic())

    def let_go(self, messages: Iterable[Message]) -> None:
        """The agents let these handed-over records go unhandled: they leave Faust's
        unacknowledged set (stop and rebalance wait on it) and are owed again from the
        first of each partition (``Cursors.rewind``), so nothing above them is taken
        before they are."""
        first: dict[TP, int] = {}
        unacked = self._unacked_messages
        for message in messages:
            unacked.discard(message)
            tp = message.tp
            if self._in_order(tp.topic) and message.offset < first.get(tp, message.offset + 1):
                first[tp] = message.offset
            self._done_with(message)
        now = monotonic()
        for tp, offset in first.items():
            log.warning(
                "%s[%d]: records from offset %d were let go unhandled; reading again from there",
                tp.topic,
                tp.partition,
                offset,
            )
            self._cursors.rewind(tp, offset, now)

    def ack(self, message: Message) -> bool:
        done = not message.acked
        acked = super().ack(message)
        if done and message.acked:
            self._done_with(message)
        return acked

    def _done_with(self, message: Message) -> None:
        """A handed-over record was acknowledged or let go: its bytes are no longer held."""
        tp = message.tp
        if self._window.done(tp, _size(message)):
            # Faust's own TP: its active set asserts that type (aiokafka's is another).
            self.on_buffer_drop(TP(tp.topic, tp.partition))

    def on_buffer_drop(self, tp: TP) -> None:
        """Faust's resume of a partition whose stream buffer has room again, unless its
        bytes are still held (``flow``)."""
        if not self._window.holds(tp):
            super().on_buffer_drop(tp)

    def _in_order(self, topic: str) -> bool:
        """Topics whose offsets are committed: those the agents consume."""
        return self.app.topics.acks_enabled_for(topic)

    async def _hand_over(self, message: Message) -> None:
        tp, offset = message.tp, message.offset
        if not self._in_order(tp.topic):
            # Faust's rule for changelogs: a record below the read offset was read.
            read = self._read_offset[tp]
            if read is None or offset >= read:
                await self.callback(message)
                self._read_offset[tp] = offset
            return
        verdict = self._cursors.on_record(tp, offset, monotonic())
        if verdict.action is Action.SEEK and await self._stepped_over_unreadable(tp):
            # The jump was over offsets no consumer can read: this record is next.
            verdict = self._cursors.on_record(tp, offset, monotonic())
        if verdict.action is Action.DELIVER:
            await self.callback(message)
            if self._window.handed(tp, _size(message)):
                stream_holds_total.labels(tp.topic).inc()
                self.on_buffer_full(TP(tp.topic, tp.partition))
        elif verdict.action is Action.SEEK:
            assert verdict.offset is not None
            log.info(
                "%s[%d]: offset %d arrived while %d is owed; reading again from %d",
                tp.topic,
                tp.partition,
                offset,
                verdict.offset,
                verdict.offset,
            )
            await self._seek_back(tp, verdict.offset)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's fetch loop (``faust.transport.consumer.Consumer._drain_messages``),
        handing records over through ``_hand_over`` without a task per record."""
        getmany = self.getmany
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set  # type: ignore[attr-defined]
        suspended = self.suspend_flow.is_set
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for _tp, message in records:
                        since_yield += 1
                        if since_yield > YIELD_EVERY:
                            await asyncio.sleep(0)
                            since_yield = 0
                        if suspended():
                            continue
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await self._hand_over(message)
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _stepped_over_unreadable(self, tp: TP) -> bool:
        """Ask the broker where reading ``tp`` from its owed offset gets to before the
        first readable record. When that is further on, the offsets between hold
        transaction markers or aborted records (``Cursors.invisible``): step over them,
        let commits pass them as Faust's gaps, and return True. A readable record at the
        owed offset, or no answer, changes nothing: the seek back brings it.

        Asked on an offset jump and in the stall check only, so a client that writes
        transactions costs one broker round trip per marker the worker reads past.
        """
        owed = self._cursors.owed(tp)
        if owed is None:
            return False
        try:
            found = await self._readable.first_at_or_after(tp, owed)
        except Exception as exc:  # the seek back and the stall check still stand
            log.warning("%s[%d]: probing offset %d failed: %r", tp.topic, tp.partition, owed, exc)
            return False
        if found is None or found <= owed:
            return False
        if not self._cursors.invisible(tp, owed, found, monotonic()):
            return False
        log.debug(
            "%s[%d]: offsets %d to %d hold no readable record; going on from %d",
            tp.topic,
            tp.partition,
            owed,
            found - 1,
            found,
        )
        await self._add_gap(tp, owed, found - 1)
        return True

    async def _seek_back(self, tp: TP, offset: int) -> None:
        self._cursors.seeking_back(tp, monotonic())
        consumer = self._thread._ensure_consumer()
        await self._thread.call_thread(consumer.seek, tp, offset)

    @Service.task
    async def _seek_stalled_partitions(self) -> None:
        """Seek back where the owed offset has not moved while the consumer has read past
        it (see ``banking_app.runtime.delivery``), after giving up what retention deleted."""
        while not self.should_stop:
            await self.sleep(1.0)
            for tp, owed in self._cursors.stalled(monotonic()):
                position = await self._position(tp)
                if position is None or position <= owed:
                    self._cursors.idle(tp, monotonic())
                    continue
                starts = await self._thread.earliest_offsets(tp)
                lost = self._cursors.log_starts_at(tp, starts.get(tp))
                if lost:
                    log.warning(
                        "%s[%d]: offsets %d to %d were deleted from the log before they "
                        "were processed; going on from offset %d",
                        tp.topic,
                        tp.partition,
                        lost.start,
                        lost.stop - 1,
                        lost.stop,
                    )
                    # Let commits pass the hole, as Faust does with the gaps it books.
                    await self._add_gap(tp, lost.start, lost.stop - 1)
                    owed = lost.stop
                if await self._stepped_over_unreadable(tp):
                    # What lay there was markers or aborted records; records after them
                    # may have been skipped meanwhile, so read on from there.
                    owed = self._cursors.owed(tp) or owed
                    if position <= owed:
                        self._cursors.idle(tp, monotonic())
                        continue
                log.warning(
                    "%s[%d]: offset %d is owed to the agents but the consumer is at %d; "
                    "reading again from %d",
                    tp.topic,
                    tp.partition,
                    owed,
                    position,
                    owed,
                )
                await self._seek_back(tp, owed)

    async def _position(self, tp: TP) -> int | None:
        """The consumer's fetch position on ``tp`` (``None`` while it has none).

        Read from aiokafka's subscription state, whose names ``upstream`` checked at
        start: no subscription, assignment or position yet is ``None``, while a renamed
        attribute raises rather than reading as "no position" (which would turn the
        stall check off without a word).
        """
        consumer = self._thread._ensure_consumer()
        subscription = consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        return state.position if state is not None and state.has_valid_position else None

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek to the committed offsets, and the cursors set there. A partition
        with no committed offset (a new group, or one the broker did not answer for)
        starts at the log's first offset, as ``auto_offset_reset=earliest`` would, and is
        sought there: the cursors must know where a partition starts, or they cannot
        tell the next record from one far ahead."""
        offsets = dict(await super().seek_to_committed())
        now = monotonic()
        unknown = [
            TP(tp.topic, tp.partition)
            for tp, offset in offsets.items()
            if self._in_order(tp.topic) and (offset is None or offset < 0)
        ]
        if unknown:
            starts = await self._thread.earliest_offsets(*unknown)
            for tp in unknown:
                start = starts.get(tp)
                if start is None:
                    continue  # nothing owed, nothing delivered, until a later seek
                log.info(
                    "%s[%d]: no committed offset; reading from the log's start, %d",
                    tp.topic,
                    tp.partition,
                    start,
                )
                await super().seek(tp, start)
                offsets[tp] = start
        for tp, offset in offsets.items():
            if self._in_order(tp.topic):
                self._cursors.sought(TP(tp.topic, tp.partition), offset, now)
                if offset is not None and offset >= 0:
                    self._read_from[TP(tp.topic, tp.partition)] = offset
        return offsets

    def consumed_to(self, tp: TP) -> int | None:
        """The offset the group has consumed ``tp`` up to: the one Faust last committed
        (``Consumer._committed_offset``, faust-streaming 0.15.3), or, before any commit,
        where reading began (Faust keeps None there for an offset of 0)."""
        committed = self._committed_offset.get(tp)
        return committed if committed else self._read_from.get(tp, committed)

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        if self._in_order(partition.topic):
            self._cursors.sought(TP(partition.topic, partition.partition), offset, monotonic())

    async def on_stop(self) -> None:
        await self._readable.close()
        await super().on_stop()

    async def _commit(self, offsets: Mapping[Any, int]) -> bool:
        """Faust's commit through the consumer thread, unless that thread has crashed.

        When the worker crashes (a take that keeps failing: ``runtime.retries``), mode
        marks every service of the worker crashed at once (``Service._crash``), the
        consumer thread among them, and the thread then shuts itself down: it stops its
        method queue and leaves the group. The consumer's own stop, which comes later,
        commits once more through that queue, and a call nobody serves waited for ever:
        the worker hung after "LeaveGroup request succeeded" instead of exiting. After a
        crash the last commit is skipped; what it would have committed is read again and
        handled once, as after a SIGKILL.
        """
        if self._thread._crashed.is_set():
            log.warning(
                "not committing offsets of %d partitions: the worker has crashed, and "
                "its consumer thread has stopped; they are read again after a restart",
                len(offsets),
            )
            return False
        return await super()._commit(offsets)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._cursors.forget(revoked)
        self._window.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._cursors.forget(assigned)
        self._window.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)


def _size(message: Message) -> int:
    return len(message.value or b"") + len(message.key or b"")
