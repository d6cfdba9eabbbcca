"""Topics (plural names) and how a key picks its partition.

Values are raw bytes on purpose: the agent parses them itself, so a value that is not
JSON, or not a command, reaches the dead-letter topic with a reason instead of being
dropped by Faust's value decoder.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from banking_app.app import app
from banking_app.settings import settings

commands_topic = app.topic(
    "commands",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    retention=settings.commands_retention_ms / 1000.0,
    # internal: Faust declares it (partitions, retention) before subscribing, rather
    # than letting a broker auto-create it with its own default partition count.
    internal=True,
)
events_topic = app.topic(
    "events",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    # The event log is the source of truth: never delete it.
    config={"retention.ms": "-1", "retention.bytes": "-1"},
    internal=True,
)
dead_letters_topic = app.topic(
    "commands-dlq",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    config={"retention.ms": "-1"},
    internal=True,
)
#: The events that make up command outcomes, re-keyed by command id, so that the
#: command-outcomes table (and so ``GET /commands/{id}``) is partitioned by command id.
outcome_events_topic = app.topic(
    "command-outcome-events",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
)
OUTPUT_TOPICS = (events_topic, dead_letters_topic, commands_topic, outcome_events_topic)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java, murmur2) partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
