"""``GET /metrics``: Prometheus text, with consumer lag read at scrape time."""

from __future__ import annotations

import contextlib
import time

from faust.web import Request, Response, View
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from banking_app.runtime.faust_app import app
from banking_app.runtime.memory import heap_bytes, rss_bytes
from banking_app.runtime.metrics import lag, memory, observe_request, registry
from banking_app.runtime.rocksdb_memory import opened_usage_bytes


def refresh_lag() -> None:
    """Processing lag per partition an agent consumes, read from the consumer when
    scraped: the partition's end offset minus the next offset owed to the agent."""
    consumer = app.consumer
    lag.clear()
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None or not app.topics.acks_enabled_for(tp.topic):
            continue
        owed = consumer.owed(tp)  # banking_app.runtime.consumer.InOrderConsumer
        lag.labels(tp.topic, str(tp.partition)).set(max(highwater - (owed or 0), 0))


def refresh_memory() -> None:
    in_use, free = heap_bytes()
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
            refresh_lag()
        refresh_memory()
        body = generate_latest(registry)
        observe_request("GET", "/metrics", 200, time.perf_counter() - started)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
