"""Faust's aiokafka transport with one setting Faust does not expose: the fetch wait.

Faust fixes the consumer's ``fetch_max_wait_ms`` at 1500. A broker that does not end a
long poll when data arrives (the embedded Tansu does not) then holds every hop of the
pipeline (command → events → outcome) for up to 1.5 s. Kafka answers a fetch as soon
as data is there, so a shorter wait costs it only a few idle fetches per second.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

from banking_app.settings import settings


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms  # read when it starts
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer
