"""A partition's true end offset, on brokers that under-report it.

The embedded broker (Tansu) answers ListOffsets(latest) with the base offset of the
partition's last record batch plus one, ignoring the batch's other records: a batch of
five records at offsets 10-14 reports an end of 11, not 15. Faust's table recovery reads
a changelog only up to that end (so a recovered table would miss the batch's last
records) and refuses to start when its local RocksDB has seen further (ConsistencyError).
Reading the record at ``reported - 1`` returns its whole batch, whose last offset gives
the true end.

The probe is a Tansu workaround, used only with ``BANKING_BROKER_KIND=tansu``: Kafka
reports true ends, and there the probe would only cost a consumer per recovery, or more
(the last offset can be a transaction marker, which no consumer reads, so the probe would
wait out its timeouts). The operator's audit (``banking_app.operations.audit``) calls it
too, where it changes nothing on Kafka but time.

Upstream code corrected (faust-streaming 0.15.3 and aiokafka 0.14.0, pinned in
pyproject.toml): ``AIOKafkaConsumerThread.highwaters`` in
``faust/transport/drivers/aiokafka.py`` (aiokafka's ``end_offsets``), through which
``faust/tables/recovery.py`` reads the ends it recovers up to. ``banking_app.runtime.transport``
hooks this module in there, and ``banking_app.runtime.upstream`` checks that the hook
still runs. The probe itself uses only aiokafka's public consumer API (``assign``,
``seek``, ``getmany``): no private name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

T = TypeVar("T")  # Faust's TP or aiokafka's TopicPartition: both (topic, partition)

PROBE_TIMEOUT_MS = 2000


async def true_end_offsets(bootstrap: str, reported: Mapping[T, int]) -> dict[T, int]:
    ends = dict(reported)
    probed = {
        TopicPartition(tp.topic, tp.partition): tp  # type: ignore[attr-defined]
        for tp, end in reported.items()
        if end > 0
    }
    if not probed:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_uncommitted"
    )
    await consumer.start()
    try:
        consumer.assign(list(probed))
        for tp in probed:
            consumer.seek(tp, reported[probed[tp]] - 1)
        waiting = set(probed)
        for _ in range(5):
            if not waiting:
                break
            batch = await consumer.getmany(*waiting, timeout_ms=PROBE_TIMEOUT_MS)
            for tp, records in batch.items():
                if records:
                    original = probed[tp]
                    ends[original] = max(ends[original], records[-1].offset + 1)
                    waiting.discard(tp)
    finally:
        await consumer.stop()
    return ends


#: How the worker reads the topics it consumes: a command written in a transaction is
#: seen once the transaction commits, and never when it aborts.
ISOLATION_LEVEL = "read_committed"


class ReadableProbe:
    """Where the next record a consumer can read lies, at or after an offset.

    Kafka gives offsets to transaction markers, and a ``read_committed`` consumer never
    sees the records of an aborted transaction: the offsets a consumer reads can jump.
    The in-order consumer (``banking_app.runtime.consumer``) tells such a jump from a
    record left out by asking here: a consumer of its own, outside the group, with the
    worker's isolation level, reads one record from the offset. Public aiokafka API only.
    """

    def __init__(self, bootstrap: str, isolation_level: str = ISOLATION_LEVEL) -> None:
        self.bootstrap = bootstrap
        self.isolation_level = isolation_level
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def first_at_or_after(self, tp: T, offset: int) -> int | None:
        """Where reading ``tp`` from ``offset`` gets to before its first readable
        record: that record's offset, or, when no readable record follows yet, the
        position the consumer stepped to over unreadable offsets. None when it did not
        move at all (nothing there, or no answer in time): nothing is known."""
        async with self._lock:
            consumer = await self._started()
            partition = TopicPartition(tp.topic, tp.partition)  # type: ignore[attr-defined]
            if partition not in consumer.assignment():
                # Assigned once, with those asked about before: a new assignment is a
                # new subscription, logged and set up each time.
                consumer.assign([*consumer.assignment(), partition])
            for other in consumer.assignment():
                if other != partition:
                    consumer.pause(other)
            consumer.resume(partition)
            consumer.seek(partition, offset)
            batch = await consumer.getmany(partition, timeout_ms=PROBE_TIMEOUT_MS, max_records=1)
            records = batch.get(partition) or []
            if records:
                return records[0].offset  # type: ignore[no-any-return]
            position = await consumer.position(partition)
            return position if position > offset else None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                isolation_level=self.isolation_level,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        async with self._lock:
            if self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                await consumer.stop()
