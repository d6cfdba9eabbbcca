"""``banking-app create-topics``: every topic the bank uses, made with a plain Kafka admin
client, for clusters without ``kafka-topics.sh`` and for operators who create topics
ahead of the workers (``auto.create.topics.enable=false``)."""

from __future__ import annotations

from dataclasses import replace

from banking_app.app import app  # every agent and table registered
from banking_app.runtime.declare import TopicMismatch, TopicSpec, declare
from banking_app.runtime.settings import Settings


def topic_specs(partitions: int, replication_factor: int) -> list[TopicSpec]:
    """The topics a worker declares (``BankApp.topic_specs``), with the partition count
    and replication factor asked for: events kept forever, commands for a while, the
    changelogs compacted."""
    return [
        replace(spec, partitions=partitions, replication=replication_factor)
        for spec in app.topic_specs(partitions, replication_factor)
    ]


async def create_topics(settings: Settings, partitions: int, replication_factor: int) -> list[str]:
    specs = topic_specs(partitions, replication_factor)
    try:
        fate = await declare(settings.bootstrap_servers, specs)
    except TopicMismatch as exc:
        raise SystemExit(str(exc)) from None
    return [
        f"{spec.name}: created, {spec.partitions} partitions, {dict(spec.config)}"
        if fate[spec.name] == "created"
        else f"{spec.name}: exists (kept as it is)"
        for spec in specs
    ]
