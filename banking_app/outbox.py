"""Where the command agent's output goes: records that must be acknowledged before the
state that says they were produced is written.

``KafkaOutbox`` sends through Faust topics and waits for the broker's acks.
``RecordingOutbox`` keeps them in memory for agent unit tests under
``agent.test_context()``, where no broker exists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import faust

from banking_app.app import app
from banking_app.produce import Outgoing, produce
from banking_app.tables import BatchedTable, flush_changelogs, store_staged


class Record(NamedTuple):
    topic: faust.TopicT
    key: bytes
    value: bytes
    timestamp: float | None = None
    #: ``None``: the partition of ``key``.
    partition: int | None = None


class Outbox(Protocol):
    async def publish(self, records: list[Record]) -> None:
        """Return once every record is acknowledged by the broker (or raise)."""

    async def flush(self, tables: tuple[BatchedTable, ...] = ()) -> None:
        """Return once everything produced so far is acked, and ``tables``' staged
        writes are in their changelogs and then in the local store."""


class KafkaOutbox:
    def __init__(self, topics: tuple[faust.TopicT, ...]) -> None:
        self._undeclared = topics
        self._lock = asyncio.Lock()

    async def _declare(self) -> None:
        """Create the output topics with our partitions before the first send.

        Faust declares only the topics it consumes; a broker that auto-creates topics
        on first produce would otherwise pick its own partition count.
        """
        async with self._lock:
            for topic in self._undeclared:
                await topic.maybe_declare()
            self._undeclared = ()

    async def publish(self, records: list[Record]) -> None:
        if self._undeclared:
            await self._declare()
        # Straight to the producer, a batch per partition (banking_app.produce): the
        # topics carry raw bytes, so Topic.send's serialisation would buy nothing.
        await produce(
            Outgoing(r.topic.get_topic_name(), r.key, r.value, r.partition, r.timestamp)
            for r in records
        )

    async def flush(self, tables: tuple[BatchedTable, ...] = ()) -> None:
        await flush_changelogs(tables)
        await app.producer.flush()


@dataclass
class RecordingOutbox:
    records: list[Record] = field(default_factory=list)

    async def publish(self, records: list[Record]) -> None:
        self.records.extend(records)

    async def flush(self, tables: tuple[BatchedTable, ...] = ()) -> None:
        store_staged(tables)

    def on(self, topic: faust.TopicT) -> list[Record]:
        return [record for record in self.records if record.topic is topic]
