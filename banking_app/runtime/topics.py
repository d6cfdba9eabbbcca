"""Topics (plural names), the tables' names, and how a key picks its partition.

Values are raw bytes on purpose: the agent parses them itself, so a value that is not
JSON, or not a command, reaches the dead-letter topic with a reason instead of being
dropped by Faust's value decoder.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

import faust

from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings


class RawSchema(faust.Schema):
    """Keys and values as the bytes on the wire, handed to the agents without a codec.

    Faust's schema passes each record through its serializer registry (the ``raw``
    codec, which returns the bytes it is given) and looks the Event class up in the
    settings, for every record; this builds the same Event directly.
    """

    def compile(self, app: Any, **_: Any) -> Any:
        event_type = app.conf.Event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return event_type(app, message.key, message.value, message.headers, message)

        return decode


def raw_topic(name: str, **options: Any) -> faust.TopicT:
    """A topic of raw-bytes keys and values, with the app's partition count.

    Each is made, with its partitions and configs, before the worker subscribes
    (``BankApp.declare_topics``), rather than auto-created by a broker with the broker's
    default partition count. ``internal`` lets Faust declare it too, which then finds it.
    """
    topic = app.topic(
        name,
        schema=RawSchema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
        partitions=settings.partitions,
        internal=True,
        **options,
    )
    app.bank_topics.append(topic)
    return topic


commands_topic = raw_topic("commands", retention=settings.commands_retention_ms / 1000.0)
# The event log is the source of truth: never delete it.
events_topic = raw_topic("events", config={"retention.ms": "-1", "retention.bytes": "-1"})
dead_letters_topic = raw_topic("commands-dlq", config={"retention.ms": "-1"})
#: The events that make up command outcomes, re-keyed by command id, so that the
#: command-outcomes table (and so ``GET /commands/{id}``) is partitioned by command id.
outcome_events_topic = raw_topic("command-outcome-events")
#: Alerts of the risk rules (``banking_app.risk``), plain JSON keyed by account, kept for
#: the risk team's record; each carries a deterministic ``alert_id`` to dedupe by.
alerts_topic = raw_topic("alerts", config={"retention.ms": "-1"})

# Table names, here so that a service can find another's table in ``app.tables`` (and
# route to its owner) without importing that service; kept in ``table_names``, which
# the partition assignor reads before the app exists.
from banking_app.runtime.table_names import (  # noqa: E402
    ACCOUNT_VIEWS_TABLE,
    ACCOUNTS_TABLE,
    ALERTS_TABLE,
    COMMAND_CLAIMS_TABLE,
    COMMAND_OFFSETS_TABLE,
    COMMAND_OUTCOMES_TABLE,
    RISK_STATE_TABLE,
    TRANSACTIONS_TABLE,
)

__all__ = [
    "ACCOUNTS_TABLE",
    "ACCOUNT_VIEWS_TABLE",
    "ALERTS_TABLE",
    "COMMAND_CLAIMS_TABLE",
    "COMMAND_OFFSETS_TABLE",
    "COMMAND_OUTCOMES_TABLE",
    "RISK_STATE_TABLE",
    "TRANSACTIONS_TABLE",
]


def hash_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java, murmur2) partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: ``hash_partition``, cached for keys that recur: account ids come with every command
#: and event of their account. (Command ids are unique: hash them uncached.)
partition_for = lru_cache(maxsize=1 << 16)(hash_partition)


_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned.

    The same function as ``aiokafka.partitioner.murmur2`` (a property test holds them
    equal), in half its time: the words are unpacked at once and the 32-bit masks
    applied once per step. Command ids, unique, are hashed on every event.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data) if words else ():
        k = (k * _M) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    tail = length & 3
    if tail:
        base = length & ~3
        if tail >= 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h ^= data[base]
        h = (h * _M) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)
