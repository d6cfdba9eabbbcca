"""Producing load and watching for its effects, with plain aiokafka clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Send every record as fast as one producer can; returns when the first was sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        pending = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
        return started
    finally:
        await producer.stop()


class Watcher:
    """Reads a topic from its current end and records when ``done(record)`` has seen enough.

    ``done`` is called with each decoded JSON value (and key); it returns True once the
    condition holds, and the time of that record's arrival is kept.
    """

    def __init__(self, bootstrap: str, topic: str, done: Callable[[bytes, dict], bool]) -> None:
        self.bootstrap, self.topic, self.done = bootstrap, topic, done
        self.finished_at: float | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await self.ready.wait()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_wait_ms=20,
        )
        await consumer.start()
        try:
            while not consumer.partitions_for_topic(self.topic):
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            tps = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic))
            ]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the positions now, before any load is sent
                await consumer.position(tp)
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for records in batch.values():
                    for record in records:
                        if record.value is None:
                            continue
                        if self.done(record.key, orjson.loads(record.value)):
                            self.finished_at = time.perf_counter()
                            return
        finally:
            await consumer.stop()

    async def wait(self, timeout: float) -> float:
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout)
        assert self.finished_at is not None
        return self.finished_at


def versions_reached(expected: dict[str, int]) -> Callable[[bytes, dict], bool]:
    """For the account-views changelog: done once every account shows its expected version."""
    remaining = {account for account, version in expected.items() if version > 0}

    def check(key: bytes, view: dict) -> bool:
        account = key.decode()
        if account in remaining and view.get("version", 0) >= expected[account]:
            remaining.discard(account)
        return not remaining

    return check


def count_reached(n: int) -> Callable[[bytes, dict], bool]:
    seen = 0

    def check(key: bytes, value: dict) -> bool:
        nonlocal seen
        seen += 1
        return seen >= n

    return check
