"""Topic administration with a plain Kafka admin client (for clusters without kafka-topics.sh)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from banking_app.runtime.settings import Settings


def topic_specs(settings: Settings) -> dict[str, dict[str, str]]:
    """Each topic the bank owns and its configs: events forever, commands for a while."""
    return {
        "commands": {"retention.ms": str(settings.commands_retention_ms)},
        "events": {"retention.ms": "-1", "retention.bytes": "-1"},
        "commands-dlq": {"retention.ms": "-1"},
    }


async def create_topics(settings: Settings, partitions: int, replication_factor: int) -> list[str]:
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await client.start()
    report = []
    try:
        for name, config in topic_specs(settings).items():
            topic = NewTopic(name, partitions, replication_factor, topic_configs=config)
            try:
                response = await client.create_topics([topic])
                codes = {error[1]: error[2] for error in response.topic_errors}
            except TopicAlreadyExistsError:
                codes = {TopicAlreadyExistsError.errno: "exists"}
            if TopicAlreadyExistsError.errno in codes:
                report.append(f"{name}: exists (kept as it is)")
            elif set(codes) - {0}:
                raise SystemExit(f"{name}: the broker refused to create it: {codes}")
            else:
                report.append(f"{name}: created, {partitions} partitions, {config}")
    finally:
        await client.close()
    return report
