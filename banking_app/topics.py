"""Topics (plural names) and how a key picks its partition.

Values are raw bytes on purpose: the agent parses them itself, so a value that is not
JSON, or not a command, reaches the dead-letter topic with a reason instead of being
dropped by Faust's value decoder.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import murmur2

from banking_app.app import app
from banking_app.settings import settings


def raw_topic(name: str, **options: Any) -> faust.TopicT:
    """A topic of raw-bytes keys and values, with the app's partition count.

    ``internal``: Faust declares it (partitions, configs) itself, rather than letting a
    broker auto-create it with the broker's default partition count.
    """
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
        **options,
    )


commands_topic = raw_topic("commands", retention=settings.commands_retention_ms / 1000.0)
# The event log is the source of truth: never delete it.
events_topic = raw_topic("events", config={"retention.ms": "-1", "retention.bytes": "-1"})
dead_letters_topic = raw_topic("commands-dlq", config={"retention.ms": "-1"})
#: The events that make up command outcomes, re-keyed by command id, so that the
#: command-outcomes table (and so ``GET /commands/{id}``) is partitioned by command id.
outcome_events_topic = raw_topic("command-outcome-events")
OUTPUT_TOPICS = (events_topic, dead_letters_topic, commands_topic, outcome_events_topic)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java, murmur2) partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
