"""Prometheus metrics of this worker process (served by ``GET /metrics``).

prometheus_client does the text format and histogram buckets; each worker reports its
own process, and Prometheus sums across workers.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from banking_app.domain.events import CommandRejected, Event

registry = CollectorRegistry()
commands_total = Counter(
    "banking_commands_total",
    "Commands and saga legs applied, by type",
    ["type"],
    registry=registry,
)
duplicates_total = Counter(
    "banking_duplicate_commands_total",
    "Copies of already applied commands ignored, by type",
    ["type"],
    registry=registry,
)
dead_letters_total = Counter(
    "banking_dead_letters_total",
    "Records sent to commands-dlq, by reason",
    ["reason"],
    registry=registry,
)
events_total = Counter(
    "banking_events_total",
    "Events emitted by the command side, by type",
    ["type"],
    registry=registry,
)
rejections_total = Counter(
    "banking_rejections_total", "Commands rejected, by reason", ["reason"], registry=registry
)
projected_total = Counter(
    "banking_projected_events_total",
    "Events folded into the read model, by projection",
    ["projection"],
    registry=registry,
)
take_failures_total = Counter(
    "banking_take_failures_total",
    "Failed attempts at handling a take (retried; the last one stops the worker), by agent",
    ["agent"],
    registry=registry,
)
processing_failures_total = Counter(
    "banking_processing_failures_total",
    "Inputs that failed to be decided or folded every time, set aside, by agent",
    ["agent"],
    registry=registry,
)
projection_gaps_total = Counter(
    "banking_projection_gaps_total",
    "Events refused by the account projection because events before them are missing",
    registry=registry,
)
http_latency = Histogram(
    "banking_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    registry=registry,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
lag = Gauge(
    "banking_consumer_lag",
    "Records on a partition not yet processed (highwater - position)",
    ["topic", "partition"],
    registry=registry,
)

stream_holds_total = Counter(
    "banking_stream_holds_total",
    "Times a partition's fetching stopped because the bytes it had handed over to the "
    "agents reached BANKING_STREAM_BUFFER_KB (runtime.flow)",
    ["topic"],
    registry=registry,
)
memory = Gauge(
    "banking_memory_bytes",
    "This worker's memory when scraped: rss, the C heap's heap_in_use and heap_free "
    "(held, not returned), and rocksdb (the shared budget's cache, memtables included; "
    "RocksDB allocates from the C heap, so it is part of heap_in_use)",
    ["part"],
    registry=registry,
)
allocator = Gauge(
    "banking_memory_allocator",
    "1 for the C heap's allocator this worker runs on (jemalloc, glibc or other)",
    ["allocator"],
    registry=registry,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    http_latency.labels(method.upper(), route or "other", str(status)).observe(seconds)


def count_commands(applied: Iterable[tuple[str, Sequence[Event]]]) -> None:
    """Count a take's applied inputs (type, events) with one increment per label: a
    ``labels()`` lookup takes a lock and costs more than the count itself."""
    kinds: collections.Counter[str] = collections.Counter()
    types: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for kind, events in applied:
        kinds[kind] += 1
        for event in events:
            types[event.type] += 1
            if isinstance(event, CommandRejected):
                reasons[event.reason] += 1
    for counter, counts in (
        (commands_total, kinds),
        (events_total, types),
        (rejections_total, reasons),
    ):
        for label, count in counts.items():
            counter.labels(label).inc(count)
