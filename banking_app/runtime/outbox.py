"""Where the command agent's output goes: records that must be acknowledged before the
state that says they were produced is written.

``KafkaOutbox`` sends through Faust topics and waits for the broker's acks.
``RecordingOutbox`` keeps them in memory for agent unit tests under
``agent.test_context()``, where no broker exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import faust

from banking_app.runtime.faults import InjectedFault, faults
from banking_app.runtime.faust_app import app
from banking_app.runtime.produce import Outgoing, produce
from banking_app.runtime.tables import BatchedTable, flush_changelogs, store_staged


class Record(NamedTuple):
    topic: faust.TopicT
    key: bytes
    value: bytes
    timestamp: float | None = None
    #: ``None``: the partition of ``key``.
    partition: int | None = None


#: A bundle record holds values up to about this many bytes (a single larger value goes
#: alone), well under the producer's request limit.
BUNDLE_BYTES = 256 * 1024


class Bundles:
    """Values grouped into one JSON-array record per partition of ``topic``.

    Internal repartitions (outcome events by command id, saga legs by account) cost a
    produced and a consumed record per partition and take this way, not one per value.
    """

    def __init__(self, topic: faust.TopicT) -> None:
        self.topic = topic
        self.open: dict[int, tuple[list[bytes], int]] = {}
        self.records: list[Record] = []

    def add(self, partition: int, value: bytes) -> None:
        values, size = self.open.get(partition, ([], 0))
        if values and size + len(value) > BUNDLE_BYTES:
            self._close(partition, values)
            values, size = [], 0
        values.append(value)
        self.open[partition] = (values, size + len(value) + 1)

    def _close(self, partition: int, values: list[bytes]) -> None:
        value = b"[" + b",".join(values) + b"]"
        self.records.append(Record(self.topic, b"", value, partition=partition))

    def close(self) -> list[Record]:
        for partition, (values, _) in self.open.items():
            self._close(partition, values)
        self.open = {}
        return self.records


class Outbox(Protocol):
    async def publish(self, records: list[Record], fault: str | None = None) -> None:
        """Return once every record is acknowledged by the broker (or raise).

        ``fault``: the fault-injection step this publish is (``banking_app.runtime.faults``).
        """

    async def flush(self, tables: tuple[BatchedTable, ...] = (), fault: str | None = None) -> None:
        """Return once everything produced so far is acked, and ``tables``' staged
        writes are in their changelogs and then in the local store."""


class KafkaOutbox:
    """The outbox on the app's producer. Its topics exist already: the worker makes every
    topic it writes before it starts (``banking_app.runtime.declare``)."""

    async def publish(self, records: list[Record], fault: str | None = None) -> None:
        if fault is not None and faults.active:
            try:
                faults.check(fault)
            except InjectedFault:
                await self._produce(records[: len(records) // 2])  # fail half-way
                raise
        await self._produce(records)

    async def _produce(self, records: list[Record]) -> None:
        # Straight to the producer, a batch per partition (banking_app.runtime.produce):
        # the topics carry raw bytes, so Topic.send's serialisation would buy nothing.
        await produce(
            Outgoing(r.topic.get_topic_name(), r.key, r.value, r.partition, r.timestamp)
            for r in records
        )

    async def flush(self, tables: tuple[BatchedTable, ...] = (), fault: str | None = None) -> None:
        await flush_changelogs(tables, fault)
        await app.producer.flush()


@dataclass
class RecordingOutbox:
    records: list[Record] = field(default_factory=list)

    async def publish(self, records: list[Record], fault: str | None = None) -> None:
        self.records.extend(records)

    async def flush(self, tables: tuple[BatchedTable, ...] = (), fault: str | None = None) -> None:
        store_staged(tables)

    def on(self, topic: faust.TopicT) -> list[Record]:
        return [record for record in self.records if record.topic is topic]
