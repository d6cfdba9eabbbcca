"""Faust's aiokafka transport with one setting Faust does not expose, and two fixes.

The first fix, on the embedded Tansu only (``BANKING_BROKER_KIND=tansu``): table recovery
gets true end offsets (``banking_app.runtime.offsets``), which Tansu under-reports. Kafka's
ListOffsets answer is right, and the probe would cost each recovery a consumer of its own
(and, past a transaction marker, wait out its timeout), so on Kafka recovery reads the
ends Faust reads.

The second: the consumer (``banking_app.runtime.consumer``) delivers each partition's records to
the agents in offset order, never skipping one, and with less work per record.

The setting: the fetch wait.

Faust fixes the consumer's ``fetch_max_wait_ms`` at 1500. A broker that does not end a
long poll when data arrives (the embedded Tansu does not) then holds every hop of the
pipeline (command → events → outcome) for up to 1.5 s, so on Tansu the wait defaults to
50 ms. On Kafka it defaults to Faust's: Kafka answers a fetch as soon as data is there.
``BANKING_FETCH_MAX_WAIT_MS``, when set, applies on either broker (``settings``).

Upstream code replaced or read (faust-streaming 0.15.3 and aiokafka 0.14.0, pinned in
pyproject.toml), all in ``faust/transport/drivers/aiokafka.py`` unless said otherwise:

- ``Consumer._new_consumer_thread`` (called by ``ThreadDelegateConsumer.__init__`` in
  ``faust/transport/consumer.py``) is overridden to make our ``ConsumerThread``.
- ``AIOKafkaConsumerThread._create_worker_consumer`` is extended to set the aiokafka
  consumer's private ``_fetch_max_wait_ms`` (``aiokafka/consumer/consumer.py``, read by
  ``AIOKafkaConsumer.start``), since Faust passes a fixed 1500 and offers no setting,
  and its ``_isolation_level`` to ``read_committed``, which Faust sets only under
  ``exactly_once``.
- ``AIOKafkaConsumerThread.highwaters`` (what table recovery reads the ends through,
  ``faust/tables/recovery.py``) is extended to return the true ends, on Tansu.
- ``Transport.Consumer``: the consumer class the transport makes.

The names are checked when this module is imported (``banking_app.runtime.upstream``):
an upgrade that renamed one fails here, before a worker starts, rather than leaving the
override unused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from banking_app.runtime import upstream
from banking_app.runtime.consumer import InOrderConsumer
from banking_app.runtime.offsets import ISOLATION_LEVEL, true_end_offsets
from banking_app.runtime.restore import restore_tables
from banking_app.runtime.settings import settings

upstream.check_classes()


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        upstream.check_instance(consumer)  # setting a renamed attribute would not fail
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms  # read when it starts
        # Commands written in a transaction count once it commits, never when it aborts;
        # Faust reads committed records only under exactly_once, which the bank does not
        # offer. Read when it starts, like the fetch wait.
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets as recovery needs them: on Tansu the true ends, which it under-reports
        (see banking_app.runtime.offsets); elsewhere the broker's own answer."""
        reported = await super().highwaters(*partitions)
        if not settings.on_tansu:
            return reported
        return await true_end_offsets(settings.bootstrap_servers, reported)


class Consumer(InOrderConsumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def on_first_start(self) -> None:
        """Restore the tables in bulk before the consumer joins its group, once the web
        server runs, so that ``/health`` shows how much is left (``runtime.restore``)."""
        if settings.bulk_restore:
            await restore_tables(
                settings.bootstrap_servers,
                self.app.tables.values(),
                true_ends=settings.on_tansu,
                threshold=settings.bulk_restore,
            )
        await super().on_first_start()


class Transport(driver.Transport):
    Consumer = Consumer
