"""Wait for the Kafka cluster before the worker starts its consumer and producer.

aiokafka gives up at once when no bootstrap server answers, which would make a worker
started before its broker exit. Instead the worker says clearly which broker it cannot
reach, retries with backoff, and starts as soon as the broker answers.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


async def broker_answers(bootstrap: str) -> str | None:
    """None when a bootstrap server answers; otherwise what went wrong."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        return None
    except (KafkaError, OSError) as exc:
        return str(exc)
    finally:
        await client.close()


async def wait_for_broker(
    bootstrap: str, first_delay: float = 0.5, max_delay: float = 10.0, timeout: float | None = None
) -> None:
    delay, waited = first_delay, 0.0
    while (problem := await broker_answers(bootstrap)) is not None:
        if timeout is not None and waited >= timeout:
            raise TimeoutError(f"Kafka at {bootstrap} unreachable for {waited:.0f} s: {problem}")
        log.warning(
            "Kafka at %s is unreachable (%s); retrying in %.1f s", bootstrap, problem, delay
        )
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, max_delay)
    if waited:
        log.warning("Kafka at %s answers again after %.0f s; starting", bootstrap, waited)
