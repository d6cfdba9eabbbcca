"""The two brokers the bank runs on, for tests that run on both: Tansu (embedded, memory
only) and a single Apache Kafka node (KRaft, durable in a directory of its own).

A test parametrized by ``broker_kind`` (one of ``BROKER_KINDS``) gets its broker from
``started_broker``; a module whose tests share a broker parametrizes its module-scoped
fixture by ``BROKER_KINDS`` instead, so that a Kafka node (a JVM, seconds to start) is
started once per module (``broker_and_worker``: on Tansu the session's broker and
worker, on Kafka a node and worker of the module's own). The Kafka kind needs the
session fixture ``kafka_libs`` (``tests/conftest.py``), which skips the test, saying
why, without Java 17 or jars.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from banking_app.operations.apache_kafka import KafkaNode
from support.cluster import Broker, Worker
from support.kafka import running

BROKER_KINDS = ["tansu", "kafka"]


def kafka_node(request: pytest.FixtureRequest, directory: Path, **options: Any) -> KafkaNode:
    """A single Kafka node in ``directory``, not started (skips without Java 17)."""
    libs = request.getfixturevalue("kafka_libs")
    return KafkaNode(directory, libs=libs, **options)


@contextlib.contextmanager
def started_broker(
    kind: str,
    request: pytest.FixtureRequest,
    directory: Path,
    kafka_config: dict[str, str] | None = None,
) -> Iterator[Any]:
    """Tansu, or a single Apache Kafka node in ``directory`` (skipped without Java 17)
    with ``kafka_config`` on top of its settings; stopped when the block ends."""
    if kind == "tansu":
        with Broker.start() as broker:
            yield broker
    elif kind == "kafka":
        yield from running(kafka_node(request, directory, config=kafka_config))
    else:
        raise ValueError(f"no broker of kind {kind!r}: one of {BROKER_KINDS}")


@contextlib.contextmanager
def broker_and_worker(
    kind: str,
    request: pytest.FixtureRequest,
    directory: Path,
    kafka_config: dict[str, str] | None = None,
) -> Iterator[tuple[Any, Worker]]:
    """A broker and one ready worker on it, for a module-scoped fixture: on Tansu the
    session fixtures ``broker`` and ``worker`` (as the tests had before they ran on
    Kafka too); on Kafka a node and a worker in ``directory``, stopped when the block
    ends (``kafka_config`` as for ``started_broker``)."""
    if kind == "tansu":
        yield request.getfixturevalue("broker"), request.getfixturevalue("worker")
        return
    with started_broker(kind, request, directory / "kafka", kafka_config) as broker:
        worker = Worker(broker, directory / "worker")
        worker.directory.mkdir(parents=True)
        try:
            worker.start()
            yield broker, worker
        finally:
            worker.stop()
