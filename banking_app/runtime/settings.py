"""Settings from the environment, with defaults that run on one laptop.

Production differs only by environment: point ``KAFKA_BROKER`` at the cluster, give
each worker its own ``BANKING_DATA_DIR`` and web port, raise the replication factor.
"""

from __future__ import annotations

import os
import re
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


def _float(
    name: str, default: float, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if minimum is not None and not value >= minimum:  # "not >=": NaN is refused too
        raise SystemExit(f"{name} must be at least {minimum:g}")
    if maximum is not None and not value <= maximum:  # infinity too
        raise SystemExit(f"{name} must be at most {maximum:g}")
    return value


#: The brokers the worker knows: Apache Kafka (and brokers that behave like it), and the
#: embedded Tansu, whose quirks the worker works around (README, "Known quirks").
BROKER_KINDS = ("kafka", "tansu")
#: The consumer fetch wait Faust fixes (``faust/transport/drivers/aiokafka.py``,
#: ``_create_worker_consumer``): what a worker on Kafka keeps unless told otherwise.
FAUST_FETCH_MAX_WAIT_MS = 1500
#: Tansu does not end a long poll when data arrives, so every hop of the pipeline
#: (command, events, outcome) would wait out Faust's 1.5 s there.
TANSU_FETCH_MAX_WAIT_MS = 50


def _broker_kind() -> str:
    """``BANKING_BROKER_KIND``: the Tansu workarounds cost a real Kafka needless work (an
    extra consumer per recovery, idle fetches), so a worker is told where it runs."""
    raw = os.environ.get("BANKING_BROKER_KIND", "")
    value = raw.strip().lower() or "kafka"
    if value not in BROKER_KINDS:
        raise SystemExit(
            f"BANKING_BROKER_KIND must be one of {', '.join(BROKER_KINDS)}, got {raw!r}: "
            "kafka for Apache Kafka (the default), tansu for the embedded broker"
        )
    return value


#: The worker roles (``BANKING_ROLE``, ``banking-app worker --role``): which of the
#: bank's three services a worker runs (README, "Roles and layouts").
ROLES = ("all", "command", "processor", "query")


def parse_role(raw: str) -> str:
    """``BANKING_ROLE`` as given: one of ROLES (any case, blanks ignored); empty is ``all``."""
    value = raw.strip().lower() or "all"
    if value not in ROLES:
        raise SystemExit(
            f"BANKING_ROLE (or worker --role) must be one of {', '.join(ROLES)}, got {raw!r}: "
            "command (HTTP POSTs to Kafka), processor (the command agent and its tables), "
            "query (the projections, read tables and GET views), all (everything, the default)"
        )
    return value


def parse_query_urls(raw: str) -> tuple[str, ...]:
    """``BANKING_QUERY_URL``: ``,``-separated base URLs of query-service workers."""
    urls = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for url in urls:
        if not re.fullmatch(r"https?://[^/\s]+", url):
            raise SystemExit(
                f"BANKING_QUERY_URL must list base URLs such as http://query-1:6066, got {url!r}"
            )
    return urls


def unsupported_guarantee(variable: str, value: str) -> SystemExit:
    """The stop for a processing guarantee other than at-least-once.

    Faust's ``exactly_once`` wraps Faust's own sends in Kafka transactions, but the bank
    produces its events, saga legs and changelog writes itself
    (``banking_app.runtime.produce``), outside Faust's transaction manager, and no Kafka
    transaction covers the local RocksDB tables. Accepting the setting would promise
    what the worker does not do; the bank is correct at least once instead.
    """
    return SystemExit(
        f"{variable}={value!r} is not supported. The bank processes every input at least "
        "once, and a repeated input changes nothing (docs/at-least-once.md). exactly_once "
        "is not offered: the bank sends its events, saga legs and changelog writes itself, "
        "outside Faust's Kafka transactions, which would not cover them. Unset "
        f"{variable} or set it to at_least_once."
    )


def _at_least_once() -> None:
    raw = os.environ.get("BANKING_PROCESSING_GUARANTEE", "").strip()
    if raw and raw != "at_least_once":
        raise unsupported_guarantee("BANKING_PROCESSING_GUARANTEE", raw)


@dataclass(frozen=True)
class Settings:
    broker: str
    broker_kind: str
    store: str
    web_port: int
    web_host: str
    data_dir: str
    partitions: int
    replication_factor: int
    rebalance_timeout: float
    commands_retention_ms: int
    api_token: str
    fetch_max_wait_ms: int
    batch_size: int
    batch_bytes: int
    producer_linger_ms: int
    batch_window: float
    batch_quiet: float
    stream_buffer: int
    stream_buffer_kb: int
    api_token_reads: bool
    forward_timeout: float
    take_attempts: int
    leg_key: str
    take_retry_backoff: float
    bulk_restore: int
    stall_seconds: float
    session_timeout: float
    rocksdb_memory_mb: int
    malloc_trim_seconds: float
    alerts: AlertSettings
    role: str = "all"
    query_urls: tuple[str, ...] = ()

    def leg_key_bytes(self) -> bytes:
        """``BANKING_LEG_KEY``, or a clear stop: a worker cannot seal legs without it."""
        if len(self.leg_key) < 32:
            raise SystemExit(
                "BANKING_LEG_KEY must be set to a secret of at least 32 characters, the "
                "same on every worker (e.g. python -c 'import secrets; "
                "print(secrets.token_hex(32))')"
            )
        return self.leg_key.encode()

    @property
    def on_tansu(self) -> bool:
        """Whether the Tansu workarounds apply (``BANKING_BROKER_KIND=tansu``)."""
        return self.broker_kind == "tansu"

    @property
    def bootstrap_servers(self) -> str:
        """``kafka://a:9092;kafka://b:9092`` as a plain client wants it: ``a:9092,b:9092``."""
        hosts = [part.strip() for part in self.broker.replace(",", ";").split(";")]
        return ",".join(host.removeprefix("kafka://") for host in hosts if host)


@dataclass(frozen=True)
class AlertSettings:
    """The risk rules' settings (``banking_app.risk.rules.Thresholds`` reads them).

    ``enabled`` (``BANKING_ALERTS``, on by default): whether the worker runs the alert
    agent at all; off, no alert is raised and the GET views answer what is stored.
    """

    enabled: bool
    velocity_count: int
    velocity_minutes: int
    velocity_hop_minutes: int
    large_factor: float
    large_limit: int
    large_min_history: int
    pass_through_percent: int
    pass_through_min_amount: int
    pass_through_minutes: int
    pass_through_hop_minutes: int
    fan_out_accounts: int
    fan_out_minutes: int
    fan_out_hop_minutes: int
    probing_refusals: int
    probing_minutes: int
    probing_hop_minutes: int
    grace_minutes: int


def _window(name: str, minutes: int, hop: int) -> tuple[int, int]:
    """``BANKING_ALERT_<name>_MINUTES`` and ``_HOP_MINUTES``: a window is whole hops."""
    size = _int(f"BANKING_ALERT_{name}_MINUTES", minutes, minimum=1)
    step = _int(f"BANKING_ALERT_{name}_HOP_MINUTES", hop, minimum=1)
    if size % step:
        raise SystemExit(
            f"BANKING_ALERT_{name}_MINUTES ({size}) must be a multiple of "
            f"BANKING_ALERT_{name}_HOP_MINUTES ({step})"
        )
    return size, step


def load_alerts() -> AlertSettings:
    """The defaults are a starting point for a risk team to tune, not a policy: amounts
    in minor units (1,000,000 is 10,000.00), windows in minutes of event time."""
    velocity = _window("VELOCITY", 10, 1)
    pass_through = _window("PASS_THROUGH", 60, 5)
    fan_out = _window("FAN_OUT", 60, 5)
    probing = _window("PROBING", 10, 1)
    return AlertSettings(
        enabled=os.environ.get("BANKING_ALERTS", "1").strip().lower() not in {"0", "false", "no"},
        velocity_count=_int("BANKING_ALERT_VELOCITY_COUNT", 5, minimum=1),
        velocity_minutes=velocity[0],
        velocity_hop_minutes=velocity[1],
        large_factor=_float("BANKING_ALERT_LARGE_FACTOR", 10.0, minimum=1, maximum=1e6),
        large_limit=_int("BANKING_ALERT_LARGE_LIMIT", 1_000_000, minimum=1),
        large_min_history=_int("BANKING_ALERT_LARGE_MIN_HISTORY", 5, minimum=1),
        pass_through_percent=_int("BANKING_ALERT_PASS_THROUGH_PERCENT", 80, minimum=1),
        pass_through_min_amount=_int("BANKING_ALERT_PASS_THROUGH_MIN_AMOUNT", 100_000, minimum=1),
        pass_through_minutes=pass_through[0],
        pass_through_hop_minutes=pass_through[1],
        fan_out_accounts=_int("BANKING_ALERT_FAN_OUT_ACCOUNTS", 10, minimum=1),
        fan_out_minutes=fan_out[0],
        fan_out_hop_minutes=fan_out[1],
        probing_refusals=_int("BANKING_ALERT_PROBING_REFUSALS", 3, minimum=1),
        probing_minutes=probing[0],
        probing_hop_minutes=probing[1],
        grace_minutes=_int("BANKING_ALERT_GRACE_MINUTES", 10, minimum=0),
    )


def load() -> Settings:
    partitions = _int("BANKING_PARTITIONS", 8, minimum=1)
    _at_least_once()
    broker_kind = _broker_kind()
    return Settings(
        broker=os.environ.get("KAFKA_BROKER", "kafka://localhost:9092"),
        broker_kind=broker_kind,
        # memory:// is for the agent unit tests; workers keep tables in RocksDB.
        store=os.environ.get("BANKING_STORE", "rocksdb://"),
        web_port=_int("BANKING_WEB_PORT", 6066),
        web_host=os.environ.get("BANKING_WEB_HOST", "localhost"),
        data_dir=os.environ.get("BANKING_DATA_DIR", "banking-data"),
        partitions=partitions,
        replication_factor=_int("BANKING_REPLICATION_FACTOR", 1),
        # Faust's 30 s default makes the first group join wait that long on a small
        # broker; 5 s is plenty for a handful of workers and keeps start-up quick.
        rebalance_timeout=_float("BANKING_REBALANCE_TIMEOUT", 5.0),
        commands_retention_ms=_int("BANKING_COMMANDS_RETENTION_MS", 7 * 24 * 3600 * 1000),
        api_token=os.environ.get("BANKING_API_TOKEN", ""),
        # Set, it applies on either broker; unset, Tansu gets its short wait and Kafka
        # keeps Faust's, since Kafka ends a fetch as soon as data is there.
        fetch_max_wait_ms=_int(
            "BANKING_FETCH_MAX_WAIT_MS",
            TANSU_FETCH_MAX_WAIT_MS if broker_kind == "tansu" else FAUST_FETCH_MAX_WAIT_MS,
            minimum=0,
        ),
        # Agents take up to this many records at a time. A take is handled once no
        # record arrived for ``batch_quiet`` seconds, or ``batch_window`` after its first
        # record (banking_app.runtime.streams): under load takes fill, and a lone command waits
        # only the quiet time at each agent (docs/BENCHMARKS.md).
        batch_size=_int("BANKING_BATCH_SIZE", 1000, minimum=1),
        # ... and records whose values reach this many bytes together. A record of legs
        # bundles up to 256 KiB of them (runtime.outbox.BUNDLE_BYTES): a thousand such
        # records in one take held some 100,000 inputs, hundreds of MiB, and the event
        # loop for tens of seconds. A take of a thousand commands is about 300 KB.
        batch_bytes=_int("BANKING_BATCH_BYTES", 1024 * 1024, minimum=1),
        producer_linger_ms=_int("BANKING_PRODUCER_LINGER_MS", 5),
        batch_window=_float("BANKING_BATCH_WINDOW", 0.1, minimum=0),
        batch_quiet=_float("BANKING_BATCH_QUIET", 0.005, minimum=0),
        # Records each agent's stream may hold before Faust stops fetching its
        # partitions. Faust's 4096 paused the events partitions over and over under a
        # transfer load (a take of 1,000 transfers makes some 3,000 events), and each
        # pause and resume cost the fetch loop work; 16384 took a tenth off the worker's
        # CPU time per transfer (docs/BENCHMARKS.md). Faust reads 0 as "no bound".
        stream_buffer=_int("BANKING_STREAM_BUFFER", 16384, minimum=1),
        # KiB a partition's records may hold, handed over to the agents and not done
        # with, before its fetching stops until they fall to half (runtime.flow): the
        # record bound above does not see that a bundle of legs is a thousand commands'
        # bytes. 0: no bound in bytes. 4 MiB is four takes' worth (BANKING_BATCH_BYTES)
        # a partition; at 1,000,000 accounts it lowered the peak RSS (docs/BENCHMARKS.md).
        stream_buffer_kb=_int("BANKING_STREAM_BUFFER_KB", 4096, minimum=0),
        api_token_reads=os.environ.get("BANKING_API_TOKEN_READS", "") in {"1", "true", "yes"},
        # Seconds a worker waits for another worker it forwards a read to (a GET for a
        # key the other owns, a ``?wait=true`` lookup): then 504, not a hung request.
        forward_timeout=_float("BANKING_FORWARD_TIMEOUT", 5.0, minimum=0.1, maximum=60),
        # A failed take is handled again after a backoff doubling from this many seconds
        # up to 5 s; after this many attempts in all the worker stops, loudly, and the
        # take is read again after a restart (banking_app.runtime.retries). The default
        # rides out about a minute of trouble, such as a broker failing over.
        take_attempts=_int("BANKING_TAKE_ATTEMPTS", 16, minimum=1),
        # The key the workers seal saga legs with (banking_app.event_processor.leg_seal);
        # the same on every worker of a bank, and known to no client. Checked at start.
        leg_key=os.environ.get("BANKING_LEG_KEY", ""),
        take_retry_backoff=_float("BANKING_TAKE_RETRY_BACKOFF", 0.1, minimum=0),
        # A starting worker reads what its tables lack of their changelogs in bulk before
        # it joins its group (banking_app.runtime.restore): each partition this many
        # records or more behind. Fewer are left to Faust's recovery; 0 leaves it all.
        bulk_restore=_int("BANKING_BULK_RESTORE", 1000, minimum=0),
        # /health says a worker is unhealthy once an agent with records waiting has
        # handled nothing for this many seconds (banking_app.runtime.liveness). Longer
        # than a take's retries ride out (BANKING_TAKE_ATTEMPTS, about a minute).
        stall_seconds=_float("BANKING_STALL_SECONDS", 90.0, minimum=1),
        # What all of a worker's RocksDB databases may hold in memory together: block
        # cache, index and filter blocks, and memtables (banking_app.runtime.rocksdb_memory).
        # 256 by default: at 200,000 accounts it lowered the peak RSS from about 650 to
        # 520 MiB and a recovered worker's from 550 to 320, at no cost to the deposit rate
        # (docs/BENCHMARKS.md). 0: Faust's own options, a cache and memtables per
        # database, with no bound on their sum.
        rocksdb_memory_mb=_int("BANKING_ROCKSDB_MEMORY_MB", 256, minimum=0),
        # Seconds between returns of glibc's free heap to the system (runtime.memory),
        # so a burst's peak does not stay resident; 0: never.
        malloc_trim_seconds=_float("BANKING_MALLOC_TRIM_SECONDS", 0.0, minimum=0, maximum=3600),
        # Seconds before the group gives a silent (dead) worker's partitions to the
        # others; the heartbeat is a third of it, at most 1 s (docs/BENCHMARKS.md has
        # the failover figures). Kafka refuses less than 6 s by default.
        session_timeout=_float("BANKING_SESSION_TIMEOUT", 6.0, minimum=1),
        # The risk rules' thresholds, BANKING_ALERT_* (README, "Alerts").
        alerts=load_alerts(),
        # Which services this worker runs (runtime.roles); ``all``, the default, is the
        # whole bank in one worker.
        role=parse_role(os.environ.get("BANKING_ROLE", "")),
        # Where a worker without the read model (command, processor) sends reads; a
        # processor finds the query workers in its consumer group when this is unset.
        query_urls=parse_query_urls(os.environ.get("BANKING_QUERY_URL", "")),
    )


settings = load()
