"""Settings from the environment, with defaults that run on one laptop.

Production differs only by environment: point ``KAFKA_BROKER`` at the cluster, give
each worker its own ``BANKING_DATA_DIR`` and web port, raise the replication factor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}")
    return value


def _float(name: str, default: float, minimum: float | None = None) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and not value >= minimum:  # "not >=": NaN is refused too
        raise SystemExit(f"{name} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class Settings:
    broker: str
    store: str
    web_port: int
    web_host: str
    data_dir: str
    partitions: int
    replication_factor: int
    processing_guarantee: str
    rebalance_timeout: float
    commands_retention_ms: int
    api_token: str
    fetch_max_wait_ms: int
    batch_size: int
    producer_linger_ms: int
    batch_window: float
    batch_quiet: float
    stream_buffer: int
    api_token_reads: bool

    @property
    def bootstrap_servers(self) -> str:
        """``kafka://a:9092;kafka://b:9092`` as a plain client wants it: ``a:9092,b:9092``."""
        hosts = [part.strip() for part in self.broker.replace(",", ";").split(";")]
        return ",".join(host.removeprefix("kafka://") for host in hosts if host)


def load() -> Settings:
    partitions = _int("BANKING_PARTITIONS", 8, minimum=1)
    guarantee = os.environ.get("BANKING_PROCESSING_GUARANTEE", "at_least_once")
    if guarantee not in {"at_least_once", "exactly_once"}:
        raise SystemExit("BANKING_PROCESSING_GUARANTEE must be at_least_once or exactly_once")
    return Settings(
        broker=os.environ.get("KAFKA_BROKER", "kafka://localhost:9092"),
        # memory:// is for the agent unit tests; workers keep tables in RocksDB.
        store=os.environ.get("BANKING_STORE", "rocksdb://"),
        web_port=_int("BANKING_WEB_PORT", 6066),
        web_host=os.environ.get("BANKING_WEB_HOST", "localhost"),
        data_dir=os.environ.get("BANKING_DATA_DIR", "banking-data"),
        partitions=partitions,
        replication_factor=_int("BANKING_REPLICATION_FACTOR", 1),
        processing_guarantee=guarantee,
        # Faust's 30 s default makes the first group join wait that long on a small
        # broker; 5 s is plenty for a handful of workers and keeps start-up quick.
        rebalance_timeout=_float("BANKING_REBALANCE_TIMEOUT", 5.0),
        commands_retention_ms=_int("BANKING_COMMANDS_RETENTION_MS", 7 * 24 * 3600 * 1000),
        api_token=os.environ.get("BANKING_API_TOKEN", ""),
        fetch_max_wait_ms=_int("BANKING_FETCH_MAX_WAIT_MS", 50),
        # Agents take up to this many records at a time. A take is handled once no
        # record arrived for ``batch_quiet`` seconds, or ``batch_window`` after its first
        # record (banking_app.runtime.streams): under load takes fill, and a lone command waits
        # only the quiet time at each agent (docs/BENCHMARKS.md).
        batch_size=_int("BANKING_BATCH_SIZE", 1000, minimum=1),
        producer_linger_ms=_int("BANKING_PRODUCER_LINGER_MS", 5),
        batch_window=_float("BANKING_BATCH_WINDOW", 0.1, minimum=0),
        batch_quiet=_float("BANKING_BATCH_QUIET", 0.005, minimum=0),
        # Records each agent's stream may hold before Faust stops fetching its
        # partitions. Faust's 4096 paused the events partitions over and over under a
        # transfer load (a take of 1,000 transfers makes some 3,000 events), and each
        # pause and resume cost the fetch loop work; 16384 took a tenth off the worker's
        # CPU time per transfer (docs/BENCHMARKS.md). Faust reads 0 as "no bound".
        stream_buffer=_int("BANKING_STREAM_BUFFER", 16384, minimum=1),
        api_token_reads=os.environ.get("BANKING_API_TOKEN_READS", "") in {"1", "true", "yes"},
    )


settings = load()
