"""Faust's aiokafka transport with one setting Faust does not expose, and two fixes.

The first fix: table recovery gets true end offsets (``banking_app.runtime.offsets``), which
the embedded broker under-reports.

The second: the consumer (``banking_app.runtime.consumer``) delivers each partition's records to
the agents in offset order, never skipping one, and with less work per record.

The setting: the fetch wait.

Faust fixes the consumer's ``fetch_max_wait_ms`` at 1500. A broker that does not end a
long poll when data arrives (the embedded Tansu does not) then holds every hop of the
pipeline (command → events → outcome) for up to 1.5 s. Kafka answers a fetch as soon
as data is there, so a shorter wait costs it only a few idle fetches per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from banking_app.runtime.consumer import InOrderConsumer
from banking_app.runtime.offsets import true_end_offsets
from banking_app.runtime.settings import settings


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms  # read when it starts
        return consumer

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets as recovery needs them: the true ends (see banking_app.runtime.offsets)."""
        reported = await super().highwaters(*partitions)
        return await true_end_offsets(settings.bootstrap_servers, reported)


class Consumer(InOrderConsumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer
