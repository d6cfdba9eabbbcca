"""Faust's aiokafka transport with one setting Faust does not expose, and two fixes.

The first fix: table recovery gets true end offsets (``banking_app.offsets``), which
the embedded broker under-reports.

The second: the records of every topic whose offsets Faust commits reach the agents in
offset order, without a skip (``banking_app.delivery`` says why and how). Faust's own
"already read" drop and its gap booking are turned off for those topics, since both
can make a record disappear after a rebalance.

The setting: the fetch wait.

Faust fixes the consumer's ``fetch_max_wait_ms`` at 1500. A broker that does not end a
long poll when data arrives (the embedded Tansu does not) then holds every hop of the
pipeline (command → events → outcome) for up to 1.5 s. Kafka answers a fetch as soon
as data is there, so a shorter wait costs it only a few idle fetches per second.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from mode import Service

from banking_app.delivery import Action, Cursors
from banking_app.offsets import true_end_offsets
from banking_app.settings import settings


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms  # read when it starts
        return consumer

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets as recovery needs them: the true ends (see banking_app.offsets)."""
        reported = await super().highwaters(*partitions)
        return await true_end_offsets(settings.bootstrap_servers, reported)


log = logging.getLogger(__name__)


class ReadOffsets(defaultdict):
    """Faust's per-partition read offsets, reporting none for the in-order topics.

    Faust's fetch loop drops a record below the read offset and books a jump above it as
    a gap; with ``None`` it does neither, and ``Consumer._deliver_in_order`` decides.
    """

    def __init__(self, in_order: Callable[[str], bool]) -> None:
        super().__init__(lambda: None)
        self._in_order = in_order

    def __getitem__(self, tp: TP) -> int | None:
        if self._in_order(tp.topic):
            return None
        return super().__getitem__(tp)


class Consumer(driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors = Cursors()
        self._read_offset = ReadOffsets(self._in_order)
        self._deliver: Callable[[Message], Awaitable[None]] = self.callback
        self.callback = self._deliver_in_order

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _in_order(self, topic: str) -> bool:
        """Topics whose offsets are committed: those the agents consume (not changelogs,
        which table recovery reads with its own bookkeeping)."""
        return self.app.topics.acks_enabled_for(topic)

    async def _deliver_in_order(self, message: Message) -> None:
        tp = message.tp
        if not self._in_order(tp.topic):
            await self._deliver(message)
            return
        verdict = self._cursors.on_record(tp, message.offset)
        if verdict.action is Action.DELIVER:
            await self._deliver(message)
        elif verdict.action is Action.SEEK:
            assert verdict.offset is not None
            log.info(
                "%s[%d]: offset %d arrived while %d is owed; reading again from %d",
                tp.topic,
                tp.partition,
                message.offset,
                verdict.offset,
                verdict.offset,
            )
            await self._seek_back(tp, verdict.offset)

    async def _seek_back(self, tp: TP, offset: int) -> None:
        self._cursors.seeking_back(tp, monotonic())
        consumer = self._thread._ensure_consumer()
        await self._thread.call_thread(consumer.seek, tp, offset)

    @Service.task
    async def _retry_overdue_seeks(self) -> None:
        """Seek again where a seek back has not brought the owed record (see
        ``banking_app.delivery``), after giving up what retention deleted."""
        while not self.should_stop:
            await self.sleep(1.0)
            for tp, owed in self._cursors.overdue(monotonic()):
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
                owed = self._cursors.owed(tp)
                if owed is None:
                    continue
                log.warning(
                    "%s[%d]: offset %d is still owed to the agents; seeking to it again",
                    tp.topic,
                    tp.partition,
                    owed,
                )
                await self._seek_back(tp, owed)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            if self._in_order(tp.topic):
                self._cursors.sought(TP(tp.topic, tp.partition), offset)
        return offsets

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        if self._in_order(partition.topic):
            self._cursors.sought(TP(partition.topic, partition.partition), offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._cursors.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._cursors.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)


class Transport(driver.Transport):
    Consumer = Consumer
