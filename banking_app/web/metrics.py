"""``GET /metrics``: Prometheus text, with consumer lag read at scrape time."""

from __future__ import annotations

import contextlib
import time

from faust.web import Request, Response, View
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from banking_app.app import app
from banking_app.metrics import lag, observe_request, registry


def refresh_lag() -> None:
    """Processing lag per assigned partition, read from the consumer when scraped."""
    consumer = app.consumer
    read_offsets = getattr(consumer, "_read_offset", {})  # Faust keeps no public accessor
    lag.clear()
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        last_read = read_offsets.get(tp)
        processed = last_read + 1 if last_read is not None else 0
        lag.labels(tp.topic, str(tp.partition)).set(max(highwater - processed, 0))


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        started = time.perf_counter()
        with contextlib.suppress(Exception):  # before the first assignment there is no lag
            refresh_lag()
        body = generate_latest(registry)
        observe_request("GET", "/metrics", 200, time.perf_counter() - started)
        return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
