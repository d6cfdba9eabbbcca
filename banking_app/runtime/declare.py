"""Every topic the worker reads or writes exists, and each partition has a leader, before
the worker's consumer subscribes.

Faust declares a topic just before it subscribes to it, and the bank's outbox declared
its output topics on the first publish. On a new Kafka cluster (with
``auto.create.topics.enable=false``, as the bank asks for) both lose a race: a topic
made a moment before the subscription is often still without leaders in the metadata
the consumer then reads. aiokafka keeps that topic out of its assignment until its next
scheduled metadata refresh, up to five minutes later, and in the meantime no agent reads
it. Seen: ``project_outcomes`` held no partition, so every ``?wait=true`` answered 202
although the command had been applied. So the worker makes every topic first, with the
partition count and configs Faust would give it, and waits until the cluster names a
leader for every partition.

A topic that exists with another partition count stops the worker: a key's partition is
part of the design (an account's commands, events and rows share a partition number),
so a worker that ran on it would misplace keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from mode.utils.times import want_seconds

log = logging.getLogger(__name__)

#: Seconds between looks at the metadata while partitions have no leader yet.
POLL_SECONDS = 0.2
#: Seconds between warnings while they still have none.
WARN_SECONDS = 10.0


class TopicMismatch(RuntimeError):
    """An existing topic has another partition count than the bank is configured for."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


def spec_of(topic: Any, partitions: int, replication: int) -> TopicSpec:
    """What Faust's ``Topic.declare`` would create for ``topic`` (faust-streaming
    0.15.3's ``Topic.declare`` with the aiokafka driver's ``_topic_config``), with
    ``partitions`` and ``replication`` where the topic names none."""
    config: dict[str, str] = {}
    policies = {"compact"} if topic.compacting else set()
    if topic.deleting:
        policies.add("delete")
    if policies:
        config["cleanup.policy"] = ",".join(sorted(policies))
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    config.update({key: str(value) for key, value in (topic.config or {}).items()})
    [name] = topic.topics
    return TopicSpec(name, topic.partitions or partitions, topic.replicas or replication, config)


async def declare(bootstrap: str, specs: Iterable[TopicSpec]) -> dict[str, str]:
    """Create the topics of ``specs`` that are missing, then wait until every partition
    of each has a leader. Returns each topic's fate: ``created`` or ``exists``.

    Raises TopicMismatch when an existing topic has another partition count.
    """
    wanted = {spec.name: spec for spec in specs}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # All topics' metadata: asking for named topics could make a broker that
        # auto-creates topics make them with its own partition count.
        existing = set(await admin.list_topics())
        fate = {name: "exists" if name in existing else "created" for name in wanted}
        for name in sorted(set(wanted) - existing):
            await _create(admin, wanted[name])
        await _until_led(admin, wanted)
        return fate
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, spec: TopicSpec) -> None:
    topic = NewTopic(spec.name, spec.partitions, spec.replication, topic_configs=dict(spec.config))
    try:
        response = await admin.create_topics([topic])
    except TopicAlreadyExistsError:
        return  # made by another worker meanwhile
    for _, code, message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"the broker refused to create {spec.name!r}: {code} {message}")
    log.info("created topic %s: %d partitions, %s", spec.name, spec.partitions, dict(spec.config))


async def _until_led(admin: AIOKafkaAdminClient, wanted: Mapping[str, TopicSpec]) -> None:
    loop = asyncio.get_running_loop()
    started = warned = loop.time()
    while waiting := _leaderless(await admin.describe_topics(sorted(wanted)), wanted):
        if loop.time() - warned >= WARN_SECONDS:
            warned = loop.time()
            log.warning(
                "waiting %.0f s for the cluster to name leaders for %s",
                warned - started,
                ", ".join(waiting),
            )
        await asyncio.sleep(POLL_SECONDS)


def _leaderless(described: list[dict[str, Any]], wanted: Mapping[str, TopicSpec]) -> list[str]:
    """The topics of ``wanted`` not yet fully led in ``described`` (metadata as aiokafka's
    ``describe_topics`` answers it); TopicMismatch for a wrong partition count."""
    waiting = []
    seen = {topic["topic"]: topic for topic in described}
    for name, spec in wanted.items():
        topic = seen.get(name)
        if topic is None or topic["error_code"] != 0:
            waiting.append(name)
            continue
        partitions = topic["partitions"]
        if partitions and len(partitions) != spec.partitions:
            raise TopicMismatch(
                f"topic {name!r} has {len(partitions)} partitions; the bank is configured "
                f"for {spec.partitions} (BANKING_PARTITIONS). A key's partition is part of "
                "the design: run the bank with the topic's count, or on a new cluster."
            )
        if not partitions or any(p["error_code"] != 0 or p["leader"] < 0 for p in partitions):
            waiting.append(name)
    return waiting
