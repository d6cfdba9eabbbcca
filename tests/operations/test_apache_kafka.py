"""Apache Kafka run by ``operations.apache_kafka``, against the pinned aiokafka.

What the Tansu broker cannot show: records and committed offsets on disk across a
controlled stop and across SIGKILL, and a replicated topic (``acks=all``,
``min.insync.replicas=2``) staying writable and readable with one node in three dead.
Skipped without Java 17, or when the Kafka jars can be neither found nor fetched.
Each cluster starts once per module: a JVM takes seconds to start.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from banking_app.operations import apache_kafka
from banking_app.operations.apache_kafka import KafkaCluster, KafkaNode
from support.kafka import running

pytestmark = pytest.mark.kafka

#: Generous: the first request to a group coordinator creates __consumer_offsets, and a
#: node restarted after SIGKILL waits out its old registration's session first.
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def node(kafka_node: KafkaNode) -> KafkaNode:
    return kafka_node


@pytest.fixture(scope="module")
def cluster(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    yield from running(KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), libs=kafka_libs))


# -- helpers ----------------------------------------------------------------------------


async def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    replication: int,
    configs: dict[str, str] | None = None,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication, topic_configs=configs or {})]
        )
        assert [error for _, error, *_ in response.topic_errors] == [0], response
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=value)
    finally:
        await producer.stop()


async def consume_in_group(
    bootstrap: str, topic: str, group: str, count: int
) -> tuple[list[bytes], dict[int, int]]:
    """Read ``count`` records as member of ``group``, commit, and return the values and
    the committed offset of every partition."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(TIMEOUT):
            while len(values) < count:
                batch = await consumer.getmany(timeout_ms=500)
                values += [m.value for messages in batch.values() for m in messages]
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
        return values, committed
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every record of ``topic`` from the beginning, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        values: list[bytes] = []
        async with asyncio.timeout(TIMEOUT):
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                batch = await consumer.getmany(timeout_ms=500)
                values += [m.value for messages in batch.values() for m in messages]
        return values
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, topic: str, group: str, partitions: int) -> dict:
    """The group's committed offsets, asked until every partition has one (or TIMEOUT):
    a broker just restarted answers None while it loads ``__consumer_offsets``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            offsets = {
                p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)
            }
            if None not in offsets.values() or time.monotonic() > deadline:
                return offsets
            await asyncio.sleep(1)
    finally:
        await consumer.stop()


async def described(bootstrap: str, topic: str, partitions: int) -> dict:
    """The topic as the admin client describes it, asked until every partition has a
    leader (or TIMEOUT): a topic just created is described before all are placed."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [description] = await admin.describe_topics([topic])
        finally:
            await admin.close()
        placed = [p for p in description["partitions"] if p["leader"] >= 0]
        if len(placed) == partitions or time.monotonic() > deadline:
            return description  # type: ignore[no-any-return]
        await asyncio.sleep(1)


def values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


# -- the jars ---------------------------------------------------------------------------


def test_the_module_pins_the_version_the_pom_fetches() -> None:
    pom = (apache_kafka.SETUP_DIR / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>(.+?)</kafka\.version>", pom)
    assert match is not None
    assert match.group(1) == apache_kafka.KAFKA_VERSION


def test_fetch_uses_kafka_home_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "kafka_2.13-9.9.9.jar").touch()
    env = {**os.environ, "KAFKA_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["bash", str(apache_kafka.SETUP_DIR / "fetch.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(libs)
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    assert apache_kafka.kafka_libs() == libs


# -- one node ---------------------------------------------------------------------------


async def test_create_produce_and_consume_in_a_group(node: KafkaNode) -> None:
    await create_topic(node.bootstrap, "basics", partitions=3, replication=1)
    sent = values("basics", 30)
    await produce(node.bootstrap, "basics", sent)

    got, committed = await consume_in_group(node.bootstrap, "basics", "basics-group", 30)

    assert sorted(got) == sorted(sent)
    assert sum(committed.values()) == 30
    assert await committed_offsets(node.bootstrap, "basics", "basics-group", 3) == committed


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_records_and_committed_offsets_survive_a_restart(node: KafkaNode, how: str) -> None:
    topic, group = f"durable-{how}", f"durable-{how}-group"
    await create_topic(node.bootstrap, topic, partitions=2, replication=1)
    first = values(f"{how}-before", 20)
    await produce(node.bootstrap, topic, first)
    _, committed = await consume_in_group(node.bootstrap, topic, group, 20)
    port = node.port

    if how == "stop":
        node.stop()
    else:
        node.kill()
    node.start()

    assert node.port == port
    assert sorted(await read_all(node.bootstrap, topic, 2)) == sorted(first)
    assert await committed_offsets(node.bootstrap, topic, group, 2) == committed
    # The group goes on from its committed offsets: only what came after.
    later = values(f"{how}-after", 5)
    await produce(node.bootstrap, topic, later)
    got, _ = await consume_in_group(node.bootstrap, topic, group, 5)
    assert sorted(got) == sorted(later)


def test_a_restart_keeps_the_cluster_id_and_does_not_format_again(node: KafkaNode) -> None:
    formats = node.log_path.read_text().count("Formatting")
    assert formats == 1
    again = KafkaNode(node.directory)
    assert again.cluster_id == node.cluster_id
    assert again.port == node.port
    assert f"cluster.id={node.cluster_id}" in (node.log_dir / "meta.properties").read_text()


# -- three nodes ------------------------------------------------------------------------


async def test_a_replicated_topic_survives_one_node_killed(cluster: KafkaCluster) -> None:
    topic = "replicated"
    await create_topic(
        cluster.bootstrap,
        topic,
        partitions=3,
        replication=3,
        configs={"min.insync.replicas": "2"},
    )
    description = await described(cluster.bootstrap, topic, 3)
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        [config] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    assert all(len(p["replicas"]) == 3 for p in description["partitions"])
    entries = {entry[0]: entry[1] for entry in config.resources[0][4]}
    assert entries["min.insync.replicas"] == "2"
    leader = next(p["leader"] for p in description["partitions"] if p["partition"] == 0)

    before = values("before", 30)
    await produce(cluster.bootstrap, topic, before)

    cluster.node(leader).kill()
    try:
        after = values("after", 30)
        await produce(cluster.bootstrap, topic, after)
        got, committed = await consume_in_group(cluster.bootstrap, topic, "replicated", 60)
        assert sorted(got) == sorted(before + after)
        assert sum(committed.values()) == 60
    finally:
        cluster.restart_node(leader)

    # Back with all three: the restarted node catches up and rejoins every ISR.
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                [description] = await admin.describe_topics([topic])
                if all(len(p["isr"]) == 3 for p in description["partitions"]):
                    break
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    assert sorted(await read_all(cluster.bootstrap, topic, 3)) == sorted(before + after)
