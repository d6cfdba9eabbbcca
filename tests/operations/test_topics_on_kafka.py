"""The bank's topics as an operator sets them up on Apache Kafka, and a worker on them.

Tansu does not keep topic configs the way Kafka does (nor compact, nor expire), so only
a real Kafka shows that ``kafka-setup/create_topics.sh`` and the worker's own topic
declarations (Faust's changelogs, ``banking_app.runtime.topics``) give each topic the
retention, compaction and partition count the bank depends on: an events log that is
never deleted, changelogs that compaction keeps from growing without bound, and
partitions that match ``BANKING_PARTITIONS`` (a key's partition is part of the design).
Then a worker on Kafka (so without the Tansu workarounds) runs a command end to end, and
a fresh worker recovers the tables from the changelogs, reading the ends Kafka reports.
Skipped without Java 17, or when the Kafka jars can be neither found nor fetched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from banking_app.app import app  # with every agent and table registered
from banking_app.operations import apache_kafka
from banking_app.operations.apache_kafka import KafkaNode
from banking_app.operations.http_client import BankClient
from banking_app.operations.local_cluster import Worker
from banking_app.operations.topic_admin import topic_specs
from banking_app.runtime.declare import TopicMismatch, TopicSpec, declare
from banking_app.runtime.settings import settings

pytestmark = pytest.mark.kafka

#: Not the default 8, so that a topic made with the broker's or Faust's default count
#: would show.
PARTITIONS = 4
SCRIPT = apache_kafka.SETUP_DIR / "create_topics.sh"


@pytest.fixture(scope="module")
def node(kafka_node: KafkaNode) -> KafkaNode:
    return kafka_node


@pytest.fixture(scope="module")
def worker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-on-kafka")


@pytest.fixture(scope="module")
def set_up(node: KafkaNode, worker_dir: Path) -> str:
    """What an operator does on a new cluster: the script, then a first worker, which
    declares the topics of its own (the tables' changelogs, the outcome events).
    Returns the script's output."""
    env = {
        **os.environ,
        "KAFKA_BROKER": node.url,
        "BANKING_PARTITIONS": str(PARTITIONS),
        # Without kafka-topics.sh the script runs `banking-app create-topics`: this venv's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # A KafkaNode has no ``kind``: Worker tells the worker BANKING_BROKER_KIND=kafka.
    first = Worker(node, worker_dir, partitions=PARTITIONS)
    try:
        first.start()
    finally:
        first.stop()
    return done.stdout + done.stderr


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    admin = await _admin(bootstrap)
    try:
        configs = {}
        for topic in topics:
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            [(error, _, _, _, entries)] = response.resources
            assert error == 0, (topic, response)
            configs[topic] = {entry[0]: entry[1] for entry in entries}
        return configs
    finally:
        await admin.close()


async def partition_counts(bootstrap: str) -> dict[str, int]:
    admin = await _admin(bootstrap)
    try:
        names = [name for name in await admin.list_topics() if not name.startswith("__")]
        return {
            description["topic"]: len(description["partitions"])
            for description in await admin.describe_topics(names)
        }
    finally:
        await admin.close()


def changelogs() -> list[str]:
    return sorted(table.changelog_topic.get_topic_name() for table in app.tables.values())


def test_the_script_created_the_bank_s_topics(set_up: str) -> None:
    for spec in topic_specs(PARTITIONS, 1):
        assert spec.name in set_up


async def test_every_topic_has_the_configured_partition_count(node: KafkaNode, set_up: str) -> None:
    counts = await partition_counts(node.bootstrap)
    ours = [*(topic.get_topic_name() for topic in app.bank_topics), *changelogs()]
    assert len(ours) == 13, ours
    assert {name: counts.get(name) for name in ours} == dict.fromkeys(ours, PARTITIONS)


async def test_the_changelogs_are_compacted(node: KafkaNode, set_up: str) -> None:
    assert len(changelogs()) == 8, changelogs()  # the eight tables of banking_app.runtime.topics
    configs = await topic_configs(node.bootstrap, changelogs())
    assert {name: config["cleanup.policy"] for name, config in configs.items()} == dict.fromkeys(
        changelogs(), "compact"
    )


async def test_events_are_kept_forever_and_commands_for_the_configured_time(
    node: KafkaNode, set_up: str
) -> None:
    configs = await topic_configs(node.bootstrap, ["events", "commands", "commands-dlq", "alerts"])
    assert configs["events"]["retention.ms"] == "-1"
    assert configs["events"]["retention.bytes"] == "-1"
    assert configs["events"]["cleanup.policy"] == "delete"  # never compacted away
    assert configs["commands"]["retention.ms"] == str(settings.commands_retention_ms)
    assert configs["commands-dlq"]["retention.ms"] == "-1"
    assert configs["alerts"]["retention.ms"] == "-1"  # the risk team's record
    # The script, the create-topics command and the worker's declarations agree.
    for spec in topic_specs(PARTITIONS, 1):
        if spec.name in configs:
            for key, value in spec.config.items():
                assert configs[spec.name][key] == value, (spec.name, key)


async def test_a_command_end_to_end_and_the_tables_recovered_from_kafka(
    node: KafkaNode, set_up: str, worker_dir: Path, tmp_path: Path
) -> None:
    # The first worker again, on its data directory.
    worker = Worker(node, worker_dir, partitions=PARTITIONS)
    worker.start()
    try:
        client = BankClient(worker.url)
        opened = await client.command(
            "/accounts", {"account_id": "kafka-1", "owner": "Ada", "currency": "EUR"}
        )
        assert opened.status == 200, opened
        deposited = await client.command("/accounts/kafka-1/deposits", {"amount": 250})
        assert deposited.status == 200, deposited
        assert deposited.body["status"] == "accepted"
        account = await client.account("kafka-1")
        assert account.status == 200, account
        assert account.body["balance"] == 250
    finally:
        worker.stop()

    # A worker with nothing on disk rebuilds the tables from their changelogs, up to the
    # ends Kafka reports (no true-end probe on Kafka).
    fresh = Worker(node, tmp_path, partitions=PARTITIONS)
    fresh.start()
    try:
        account = await BankClient(fresh.url).account("kafka-1")
        assert account.status == 200, account
        assert account.body["balance"] == 250
        outcome = await BankClient(fresh.url).outcome(deposited.body["command_id"])
        assert outcome.body.get("status") == "accepted", outcome
    finally:
        fresh.stop()


async def test_declared_topics_are_led_when_declare_returns(node: KafkaNode) -> None:
    """A consumer that subscribes right after ``declare`` must find every partition led:
    a topic still without leaders in its metadata stays out of its assignment for
    minutes (``banking_app.runtime.declare``)."""
    names = [f"declared-{n}" for n in range(3)]
    fate = await declare(node.bootstrap, [TopicSpec(name, 6, 1) for name in names])
    assert fate == dict.fromkeys(names, "created")
    admin = await _admin(node.bootstrap)
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    leaders = {
        topic["topic"]: [p["leader"] >= 0 for p in topic["partitions"]] for topic in described
    }
    assert leaders == {name: [True] * 6 for name in names}
    again = await declare(node.bootstrap, [TopicSpec(name, 6, 1) for name in names])
    assert again == dict.fromkeys(names, "exists")


async def test_a_topic_with_another_partition_count_is_refused(node: KafkaNode) -> None:
    await declare(node.bootstrap, [TopicSpec("declared-two", 2, 1)])
    with pytest.raises(TopicMismatch, match="'declared-two' has 2 partitions"):
        await declare(node.bootstrap, [TopicSpec("declared-two", PARTITIONS, 1)])
