"""A partition's true end offset, on brokers that under-report it.

The embedded broker (Tansu) answers ListOffsets(latest) with the base offset of the
partition's last record batch plus one, ignoring the batch's other records: a batch of
five records at offsets 10-14 reports an end of 11, not 15. Faust's table recovery reads
a changelog only up to that end (so a recovered table would miss the batch's last
records) and refuses to start when its local RocksDB has seen further (ConsistencyError).
Reading the record at ``reported - 1`` returns its whole batch, whose last offset gives
the true end; on Kafka the two agree and the probe changes nothing.

Upstream code corrected (faust-streaming 0.15.3 and aiokafka 0.14.0, pinned in
pyproject.toml): ``AIOKafkaConsumerThread.highwaters`` in
``faust/transport/drivers/aiokafka.py`` (aiokafka's ``end_offsets``), through which
``faust/tables/recovery.py`` reads the ends it recovers up to. ``banking_app.runtime.transport``
hooks this module in there, and ``banking_app.runtime.upstream`` checks that the hook
still runs. The probe itself uses only aiokafka's public consumer API (``assign``,
``seek``, ``getmany``): no private name.
"""

from __future__ import annotations

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
