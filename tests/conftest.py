"""Shared fixtures. Integration fixtures start the real embedded broker and real worker
subprocesses; nothing Kafka-shaped is mocked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Agent unit tests keep tables in memory; this must be set before banking_app.app is
# imported, which configures the app. Worker subprocesses are given their own store.
os.environ["BANKING_STORE"] = "memory://"
# The key the workers seal saga legs with; worker subprocesses inherit it.
os.environ.setdefault("BANKING_LEG_KEY", "tests-" + "0" * 58)
sys.path.insert(0, str(Path(__file__).parent))

from support.cluster import Broker, Worker


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
