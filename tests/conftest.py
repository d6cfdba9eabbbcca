"""Shared fixtures. Integration fixtures start the real embedded broker and real worker
subprocesses; nothing Kafka-shaped is mocked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Agent unit tests keep tables in memory; this must be set before banking_app.app is
# imported, which configures the app. Worker subprocesses are given their own store.
os.environ["BANKING_STORE"] = "memory://"
# The key the workers seal saga legs with; worker subprocesses inherit it.
os.environ.setdefault("BANKING_LEG_KEY", "tests-" + "0" * 58)
sys.path.insert(0, str(Path(__file__).parent))

from support.cluster import Broker, Worker
from support.kafka import running


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """One embedded Tansu broker for the whole session (memory only, gone afterwards)."""
    with Broker.start() as running:
        yield running


@pytest.fixture(scope="session")
def worker(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker subprocess on the session broker, ready (HTTP /health is 200)."""
    instance = Worker(broker, tmp_path_factory.mktemp("worker"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        if os.environ.get("BANKING_TEST_SHOW_LOGS"):
            print(instance.log_path.read_text())


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """Apache Kafka's jars (``operations.apache_kafka``), fetched once; the test is
    skipped, saying why, without Java 17 or when the jars can be neither found nor
    fetched."""
    from banking_app.operations import apache_kafka
    from banking_app.operations.apache_kafka import KafkaError

    if not apache_kafka.java_available():
        pytest.skip("no Java 17+ runtime on PATH: Apache Kafka cannot run here")
    try:
        libs = apache_kafka.ensure_kafka_libs()
    except KafkaError as exc:
        pytest.skip(f"the Kafka jars could not be fetched: {exc}")
    if libs is None and os.environ.get("KAFKA_HOME"):
        pytest.skip(f"KAFKA_HOME={os.environ['KAFKA_HOME']} has no libs/kafka_2.13-*.jar")
    if libs is None:
        pytest.skip("no Kafka jars cached, and no Maven (mvn) to run kafka-setup/fetch.sh")
    return libs


@pytest.fixture(scope="module")
def kafka_node(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A single-node Apache Kafka (KRaft) of the test module's own: a JVM takes seconds
    to start, and the module's tests share its topics."""
    from banking_app.operations.apache_kafka import KafkaNode

    yield from running(KafkaNode(tmp_path_factory.mktemp("kafka-node"), libs=kafka_libs))
