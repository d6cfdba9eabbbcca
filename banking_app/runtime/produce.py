"""Producing a take's records together: one aiokafka batch per partition.

Faust's ``Producer.send`` hands each record to aiokafka on its own: a partitioner call
(murmur2), a message future and accumulator bookkeeping per record, which
the worker's profile put at an eighth of its event loop. The agents produce a take's
records at once and wait for all of them, so here they are grouped by partition and
appended to aiokafka batches (``create_batch``/``send_batch``), one future per batch.
Records keep their order within each partition, which is all Kafka orders anyway.

A record may carry the timestamp -1 (Kafka's "no timestamp", which any producer may
set and a re-keyed command or a leg keeps). aiokafka's C batch builder (aiokafka
0.14.0, ``record/_crecords/default_records.pyx``, ``_encode_msg``) takes a first
timestamp of -1 to mean "no record yet": the next record with a real timestamp becomes
the batch's base, and every -1 record before it is read back with that record's
timestamp (the broker's clock, for one stamped ``None``). So a batch whose records so
far are all stamped -1 is sent before a record with another timestamp is appended
(``batches``); -1 after any other timestamp is a plain delta and is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import NamedTuple

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition
from faust.exceptions import NotReady

from banking_app.runtime.faust_app import app
from banking_app.runtime.topics import partition_for
from banking_app.runtime.turns import taking_turns

#: Records appended to a batch between two turns given to other tasks (an append is
#: cheaper than deciding a command, so the turns are further apart).
APPEND_TURN = 64


#: The largest timestamp a Kafka record holds (a signed 64-bit count of milliseconds).
MAX_MILLIS = 2**63 - 1

#: Kafka's "no timestamp", which aiokafka's C batch builder also uses as "no record yet".
NO_TIMESTAMP = -1


def millis(seconds: float | None) -> int | None:
    """A record timestamp for aiokafka: None (the broker's clock) when there is none or
    it does not fit a Kafka timestamp; 0 is the epoch, not "none"."""
    if seconds is None:
        return None
    stamp = int(seconds * 1000)
    return stamp if -1 <= stamp <= MAX_MILLIS else None


class Outgoing(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    #: ``None``: the partition of ``key``, as Kafka's default partitioner picks it.
    partition: int | None = None
    #: Seconds since the epoch (``None``: the broker's clock).
    timestamp: float | None = None


async def produce(records: Iterable[Outgoing]) -> dict[TopicPartition, int]:
    """Produce ``records``; return, once the broker has all of them, the highest offset
    written to each partition."""
    producer = app.producer._ensure_producer()  # Faust's aiokafka producer
    counts: dict[str, int] = {}
    grouped: dict[tuple[str, int], list[Outgoing]] = {}
    async for record in taking_turns(records):
        partition = record.partition
        if partition is None:
            if record.topic not in counts:
                counts[record.topic] = len(await producer.partitions_for(record.topic))
            if record.key is None:
                raise ValueError(f"a record for {record.topic} needs a key or a partition")
            partition = partition_for(record.key, counts[record.topic])
        grouped.setdefault((record.topic, partition), []).append(record)
    sent: list[tuple[asyncio.Future, int]] = []
    for (topic, partition), members in grouped.items():
        async for batch, size in batches(producer.create_batch, members):
            # Closed: complete, so the sender takes it now instead of letting it linger.
            batch.close()
            sent.append((await producer.send_batch(batch, topic, partition=partition), size))
    highest: dict[TopicPartition, int] = {}
    for metadata, size in zip(
        await asyncio.gather(*(f for f, _ in sent)), (s for _, s in sent), strict=True
    ):
        last = metadata.offset + size - 1
        if last > highest.get(metadata.topic_partition, -1):
            highest[metadata.topic_partition] = last
    return highest


async def batches(
    create_batch: Callable[[], BatchBuilder], records: Iterable[Outgoing]
) -> AsyncIterator[tuple[BatchBuilder, int]]:
    """``records``, in order, appended to as few aiokafka batches as hold them with their
    timestamps intact: each batch with the number of records in it."""
    batch, size, unstamped = create_batch(), 0, True
    async for record in taking_turns(records, every=APPEND_TURN):
        timestamp = millis(record.timestamp)
        if size and unstamped and timestamp != NO_TIMESTAMP:
            # Only -1 so far: the builder would restamp them all with this timestamp.
            yield batch, size
            batch, size = create_batch(), 0
        while batch.append(key=record.key, value=record.value, timestamp=timestamp) is None:
            yield batch, size
            batch, size = create_batch(), 0
        unstamped = (unstamped or size == 0) and timestamp == NO_TIMESTAMP
        size += 1
    if size:
        yield batch, size


#: Topics the producer's metadata is known to hold (``known_to_producer``).
_KNOWN: set[str] = set()


async def known_to_producer(topic: str, made: Callable[[], bool]) -> bool:
    """Wait until the producer's metadata holds ``topic``; False, asking nothing, while
    ``made()`` says the topic may not exist yet.

    Faust finds the worker that owns a table key (``app.router.key_store``, behind the
    query views and ``?wait`` lookups) through the producer's partitioner, which reads
    cached metadata and raised a TypeError for a topic the cache lacked. On a new Kafka
    cluster the cache is filled before Faust creates the changelog topics and refreshed
    only every ``metadata_max_age_ms`` (five minutes): every query was a 500 until
    then. aiokafka's ``partitions_for`` adds the topic and waits for its metadata; once
    per topic. Only once the topic is made (``made``): a metadata request for a topic
    not made yet could make it, on a broker that creates topics on request, with the
    broker's partition count.
    """
    if topic in _KNOWN:
        return True
    try:
        producer = app.producer._ensure_producer()
    except NotReady:  # no producer (the agent unit tests): no metadata to load
        return True
    if not made():
        return False
    await producer.partitions_for(topic)
    _KNOWN.add(topic)
    return True
