"""A broker of a three-node Apache Kafka cluster killed with SIGKILL under mixed load.

The cluster replicates every topic three times with ``min.insync.replicas`` 2, and the
worker produces with ``acks=all``. A steady stream of deposits, withdrawals and
transfers (some refused, some re-sent under the same command id) runs while the
broker that leads ``commands`` partition 0 is killed, so that partition's leadership
moves mid-load; the node comes back later and catches up.

Every command has exactly one outcome, the one the reference model expects; the books
balance; the views show the reference balances; ``replay --verify`` agrees; and every
replica of the bank's topics is back in sync. Skipped without Java 17, or when the
Kafka jars can be neither found nor fetched.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from banking_app.operations.apache_kafka import KafkaCluster
from banking_app.operations.local_cluster import Worker
from support.kafka import running
from support.load import EventLog, Feed, Producer, Workload, check_views, logs, settle, verify

pytestmark = pytest.mark.kafka

STREAM = 300
TIMEOUT = 180.0


@pytest.fixture(scope="module")
def cluster(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    yield from running(KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), libs=kafka_libs))


async def leader_of(cluster: KafkaCluster, topic: str, partition: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        leader = consumer._client.cluster.leader_for_partition(TopicPartition(topic, partition))
        assert leader is not None and leader >= 0, f"no leader for {topic}[{partition}]"
        return int(leader)
    finally:
        await consumer.stop()


async def out_of_sync(cluster: KafkaCluster, topics: list[str]) -> list[str]:
    """Partitions of ``topics`` whose in-sync replicas are fewer than their replicas."""
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        metadata = consumer._client.cluster
        lagging = []
        for topic in topics:
            for partition in metadata.partitions_for_topic(topic) or ():
                state = metadata._partitions[topic][partition]
                if set(state.isr) != set(state.replicas):
                    lagging.append(f"{topic}[{partition}] isr={state.isr} of {state.replicas}")
        return lagging
    finally:
        await consumer.stop()


async def test_a_broker_killed_under_load_loses_nothing_and_catches_up(
    cluster: KafkaCluster, tmp_path: Path
) -> None:
    rng = random.Random(53)
    work = Workload("bk53", rng)
    creations, deposits = work.opening()
    stream = work.stream(STREAM)
    kill_at = rng.randint(STREAM // 4, STREAM // 2)

    worker = Worker(
        cluster,  # type: ignore[arg-type]
        tmp_path / "worker",
        env={"BANKING_REPLICATION_FACTOR": "3"},
    )
    worker.directory.mkdir(parents=True)
    try:
        await asyncio.to_thread(worker.start)
        async with Producer(cluster) as producer, EventLog(cluster) as log:  # type: ignore[arg-type]
            await producer.send_all([*creations, *deposits])
            feed = Feed(producer, stream, 0.05).start()
            await feed.reached(kill_at)
            victim = await leader_of(cluster, "commands", 0)
            cluster.node(victim).kill()
            await feed.finished(timeout=TIMEOUT)

            await settle(log, work.expected, cluster, worker)  # type: ignore[arg-type]
            problems = log.problems(work)
            assert not problems, "\n".join(problems[:50]) + logs(worker)

        assert worker.process is not None and worker.process.poll() is None, logs(worker)
        await check_views(worker, work.bank)
        await asyncio.to_thread(cluster.restart_node, victim)
        deadline = time.monotonic() + TIMEOUT
        topics = ["commands", "events", "command-outcome-events"]
        while lagging := await out_of_sync(cluster, topics):
            assert time.monotonic() < deadline, f"not caught up: {lagging}"
            await asyncio.sleep(2)
        await verify(cluster, tmp_path / "cli", worker)  # type: ignore[arg-type]
    finally:
        worker.stop()
