"""The Faust application: one app, configured from ``banking_app.runtime.settings``."""

from __future__ import annotations

import gc
from typing import Any

import aiohttp
import faust
from faust.types.enums import ProcessingGuarantee

from banking_app.runtime.broker_wait import wait_for_broker
from banking_app.runtime.declare import TopicSpec, declare, spec_of
from banking_app.runtime.settings import settings, unsupported_guarantee
from banking_app.runtime.transport import Transport

#: CPython's (700, 10, 10), with the middle generation collected more often and the
#: oldest far less: under load the middle one's pauses fell from up to 8 ms to 2-3 ms.
GC_THRESHOLDS = (1_000, 5, 100)


def settle_garbage_collector() -> None:
    """Collect once, then exempt everything alive from future collections.

    A loaded worker's full collections each scanned every object Faust, aiokafka and
    the tables had made since start, pausing the event loop for 30 to 50 ms several
    times a minute: most of the benchmark's query p99. Frozen objects are not scanned
    again; what the agents make afterwards is short-lived and freed by reference
    counting, or found by the young collections (docs/BENCHMARKS.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def forwarding_client() -> aiohttp.ClientSession:
    """The HTTP client a worker forwards reads to other workers with (``app.http_client``).

    Faust's forwarding of a request for a key another worker owns (``table_route``)
    sets no timeout, so aiohttp's default of five minutes held the request that long
    when the owner did not answer; every request of this client ends after
    BANKING_FORWARD_TIMEOUT instead (the query views answer 504).
    """
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.forward_timeout))


class BankApp(faust.App):
    """Faust's App on our transport (see ``banking_app.runtime.transport``), which waits for its
    broker instead of exiting when it is not there yet.

    The transport is installed by overriding ``App._new_transport`` (private, called by
    the ``App.transport`` property in faust-streaming 0.15.3's ``faust/app/base.py``);
    ``banking_app.runtime.upstream`` checks that it still is.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gc_settled = False
        #: aiohttp middlewares for the web server, added by the assembly
        #: (``banking_app.app``): the runtime knows no HTTP view of its own.
        self.web_middlewares: list[Any] = []
        #: The topics the bank owns besides the tables' changelogs (``runtime.topics``):
        #: made before the consumer subscribes (``banking_app.runtime.declare``).
        self.bank_topics: list[faust.TopicT] = []
        self.on_rebalance_complete.connect(self._after_first_recovery)

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)

    def on_webserver_init(self, web: Any) -> None:
        web.web_app.middlewares.extend(self.web_middlewares)

    async def _after_first_recovery(self, sender: Any, **kwargs: Any) -> None:
        if not self._gc_settled:
            self._gc_settled = True
            settle_garbage_collector()

    def on_init_dependencies(self) -> Any:
        dependencies = super().on_init_dependencies()
        # Faust's Monitor sensor books every message and stream event in Python dicts
        # (3% of a loaded worker's time); the app's metrics are its own (/metrics), and
        # Faust's direct uses of ``app.monitor`` do not need it registered as a sensor.
        self.sensors.remove(self.monitor)
        return dependencies

    async def on_first_start(self) -> None:
        settings.leg_key_bytes()  # refuse to start without the key that seals saga legs
        self.log.info('role: %s (README, "Roles and layouts")', settings.role)
        await wait_for_broker(settings.bootstrap_servers)
        await self.declare_topics()
        await super().on_first_start()

    def topic_specs(self, partitions: int, replication: int) -> list[TopicSpec]:
        """Every topic the worker reads or writes: the bank's and the tables' changelogs."""
        topics = [*self.bank_topics, *(table.changelog_topic for table in self.tables.values())]
        return [spec_of(topic, partitions, replication) for topic in topics]

    async def declare_topics(self) -> None:
        """Make every topic the worker reads or writes, and wait for their leaders."""
        conf = self.conf
        specs = self.topic_specs(conf.topic_partitions, conf.topic_replication_factor)
        fate = await declare(settings.bootstrap_servers, specs)
        made = sorted(name for name, done in fate.items() if done == "created")
        self.log.info("topics ready: %d existed, made %s", len(fate) - len(made), made or "none")


app = BankApp(
    "banking-app",
    broker=settings.broker,
    store=settings.store,
    datadir=settings.data_dir,
    web_port=settings.web_port,
    web_host=settings.web_host,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    broker_rebalance_timeout=settings.rebalance_timeout,
    # A worker that dies is noticed when its session times out; its partitions wait
    # that long. Kafka's least session timeout (group.min.session.timeout.ms) is 6 s.
    # The heartbeats come from the consumer's own thread, so a busy event loop does not
    # delay them.
    broker_session_timeout=settings.session_timeout,
    broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
    # Every event we emit must be on all in-sync replicas before the state that says
    # it was emitted is written (docs/at-least-once.md).
    producer_acks=-1,
    # Each take sends hundreds of records and then flushes: let them share requests.
    producer_linger=settings.producer_linger_ms / 1000.0,
    producer_max_batch_size=256 * 1024,
    broker_max_poll_records=settings.batch_size * 2,
    stream_buffer_maxsize=settings.stream_buffer,
    topic_disable_leader=True,
    autodiscover=False,
    origin="banking_app",
    Stream="banking_app.runtime.streams:QuietTakeStream",
    # Faust's assignor, told every role's tables: workers of different roles share one
    # consumer group (banking_app.runtime.assignor; README, "Roles and layouts").
    PartitionAssignor="banking_app.runtime.assignor:RoleAssignor",
    HttpClient=forwarding_client,
)


def require_at_least_once(conf: Any) -> None:
    """Stop when Faust's own ``PROCESSING_GUARANTEE`` variable asks for more.

    Faust reads that variable itself, over what the app passes, so the check of
    ``BANKING_PROCESSING_GUARANTEE`` in ``settings`` alone would not catch it.
    """
    guarantee = conf.processing_guarantee
    if guarantee is not ProcessingGuarantee.AT_LEAST_ONCE:
        raise unsupported_guarantee("PROCESSING_GUARANTEE", guarantee.value)


require_at_least_once(app.conf)
