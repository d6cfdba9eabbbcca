"""The embedded broker's known quirk, and the workaround the worker relies on."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from banking_app.runtime.offsets import true_end_offsets
from support.cluster import Broker

pytestmark = pytest.mark.kafka


async def test_true_end_offset_counts_every_record_of_the_last_batch() -> None:
    with Broker.start() as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await producer.start()
        try:
            sent = [await producer.send("quirk", b"v", key=b"k", partition=0) for _ in range(5)]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        assert [future.result().offset for future in sent] == [0, 1, 2, 3, 4]

        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            tp = TopicPartition("quirk", 0)
            reported = await consumer.end_offsets([tp])
        finally:
            await consumer.stop()
        # Whatever the broker reports, the true end is one past the last record.
        assert reported[tp] <= 5
        assert await true_end_offsets(broker.bootstrap, reported) == {tp: 5}
