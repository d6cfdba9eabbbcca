"""``GET /metrics``: Prometheus text, with consumer lag read at scrape time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from banking_app.runtime.faust_app import app
from banking_app.runtime.memory import allocator as memory_allocator
from banking_app.runtime.memory import heap_bytes, rss_bytes
from banking_app.runtime.metrics import allocator, lag, memory, observe_request, registry
from banking_app.runtime.rocksdb_memory import opened_usage_bytes

#: Seconds a scrape waits for the partitions' end offsets before it reports the last
#: ones fetched instead.
END_OFFSETS_TIMEOUT = 2.0


async def refresh_lag(consumer: Any = None) -> None:
    """Processing lag per partition an agent consumes, read when scraped: the
    partition's end offset minus the next offset owed to the agent.

    The end offsets are asked of the broker (Faust's ``Consumer.highwaters``, a
    ListOffsets request) rather than read from the consumer's ``highwater``: aiokafka
    updates that only from fetch responses, which lag behind a burst. A second after a
    burst of 60,000 commands was sent, the fetched values gave a lag of 17,980 where the
    broker's gave 42,221, and they repeated the same figure for seconds. When the broker
    does not answer within ``END_OFFSETS_TIMEOUT``, the last fetched values are used.

    Records handed over to an agent are not lag: a command taken in and waiting for its
    bank-wide claim is in its account's queue, not on the topic.
    """
    consumer = consumer if consumer is not None else app.consumer
    partitions = [tp for tp in consumer.assignment() if app.topics.acks_enabled_for(tp.topic)]
    ends: Mapping[TP, int] = {}
    if partitions:
        with contextlib.suppress(Exception):
            ends = await asyncio.wait_for(consumer.highwaters(*partitions), END_OFFSETS_TIMEOUT)
    lag.clear()
    for tp in partitions:
        highwater = ends.get(tp)
        if highwater is None:
            highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        owed = consumer.owed(tp)  # banking_app.runtime.consumer.InOrderConsumer
        lag.labels(tp.topic, str(tp.partition)).set(max(highwater - (owed or 0), 0))


def refresh_memory() -> None:
    in_use, free = heap_bytes()
    allocator.labels(memory_allocator()).set(1)
    memory.labels("rss").set(rss_bytes())
    memory.labels("heap_in_use").set(in_use)
    memory.labels("heap_free").set(free)
    rocksdb = opened_usage_bytes()
    if rocksdb is not None:
        memory.labels("rocksdb").set(rocksdb)


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        started = time.perf_counter()
        with contextlib.suppress(Exception):  # before the first assignment there is no lag
            await refresh_lag()
        refresh_memory()
        body = generate_latest(registry)
        observe_request("GET", "/metrics", 200, time.perf_counter() - started)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
