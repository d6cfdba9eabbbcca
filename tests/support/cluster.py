"""The embedded broker and worker subprocesses, and a plain Kafka client, for the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from banking_app.operations.local_cluster import READY_TIMEOUT, Broker, Worker

__all__ = ["READY_TIMEOUT", "Broker", "Client", "Worker", "command"]

T = TypeVar("T")


def command(kind: str, command_id: str, account_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "command_id": command_id, "account_id": account_id, **fields}


class Client:
    """A plain aiokafka producer and reader, as a non-Faust client would use Kafka."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

    async def __aenter__(self) -> Client:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, value: dict[str, Any] | bytes, key: bytes | str | None = "auto") -> None:
        """Produce to ``commands``; by default keyed by the command's account id."""
        if key == "auto":
            assert isinstance(value, dict)
            key = str(value["account_id"]).encode()
        payload = value if isinstance(value, bytes) else orjson.dumps(value)
        await self.producer.send_and_wait("commands", payload, key=key)

    async def read(
        self,
        topic: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        """Read ``topic`` from the beginning until ``until(records)`` holds (or time out).

        Records are decoded JSON values with ``_partition``/``_offset``/``_key`` added.
        """

        def decoded(message: ConsumerRecord) -> dict[str, Any] | None:
            record = orjson.loads(message.value)
            record.update(_partition=message.partition, _offset=message.offset, _key=message.key)
            return record if where(record) else None

        return await self.scan(topic, until, timeout, decoded)

    async def read_raw(
        self,
        topic: str,
        until: Callable[[list[ConsumerRecord]], bool],
        timeout: float = 60.0,
    ) -> list[ConsumerRecord]:
        """``read``, but the records as they came: any value, JSON or not, and its key,
        timestamp and headers (a bundle of saga legs on ``commands`` is a JSON array)."""
        return await self.scan(topic, until, timeout, lambda message: message)

    async def scan(
        self,
        topic: str,
        until: Callable[[list[T]], bool],
        timeout: float,
        convert: Callable[[ConsumerRecord], T | None],
    ) -> list[T]:
        """Read ``topic`` from the beginning, keeping ``convert(record)`` where it is not
        None, until ``until(kept)`` holds; TimeoutError after ``timeout`` seconds."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic, timeout)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            found: list[T] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        item = convert(message)
                        if item is not None:
                            found.append(item)
                if until(found):
                    return found
            raise TimeoutError(f"condition not met on {topic} after {timeout} s; saw {found}")
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return partitions
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topic {topic} does not exist")
