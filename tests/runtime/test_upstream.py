"""The check of the upstream internals the runtime relies on (``banking_app.runtime.upstream``).

It passes on the installed, pinned versions; a hook that an upgrade renamed (deleted here
with monkeypatch) stops the import of the transport or the making of the consumer, with
the name and the pinned version, instead of turning the in-order safety net off.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka
import faust
import pytest
from aiokafka.consumer import subscription_state
from faust.stores.rocksdb import Store as RocksDBStore
from faust.transport import consumer as faust_consumer

from banking_app.runtime import transport, upstream
from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings
from banking_app.runtime.tables import BatchedTable
from banking_app.runtime.upstream import Hook, UpstreamChanged

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_the_pins_are_those_of_pyproject_and_installed() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = dict(
        match.groups()
        for match in (re.fullmatch(r"([\w-]+)==([\w.]+)", spec) for spec in dependencies)
        if match
    )
    assert {name: pins.get(name) for name in upstream.PINNED} == upstream.PINNED
    for package, version in upstream.PINNED.items():
        assert upstream.installed(package) == version


def test_the_installed_versions_have_every_hook() -> None:
    upstream.check_classes()
    upstream.check_instance(app.consumer)


async def test_the_installed_aiokafka_consumer_has_every_hook() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="localhost:1")
    try:
        upstream.check_instance(consumer)
    finally:
        await consumer.stop()


def test_a_missing_private_method_is_named_with_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(faust_consumer.Consumer, "_drain_messages")
    with pytest.raises(UpstreamChanged) as raised:
        upstream.check_classes()
    message = str(raised.value)
    assert "faust.transport.consumer.Consumer has no _drain_messages" in message
    assert "faust-streaming==0.15.3" in message
    assert "banking_app.runtime.consumer" in message


def test_an_override_upstream_no_longer_calls_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def renamed_fetcher(self: Any) -> None:
        await self.app.consumer._drain(self)  # as if upstream renamed the fetch loop

    monkeypatch.setattr(faust_consumer.Fetcher, "_fetcher", renamed_fetcher)
    with pytest.raises(UpstreamChanged, match=r"Fetcher\._fetcher no longer uses _drain_messages"):
        upstream.check_classes()


def test_a_missing_aiokafka_property_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(subscription_state.TopicPartitionState, "has_valid_position")
    with pytest.raises(UpstreamChanged) as raised:
        upstream.check_classes()
    assert "TopicPartitionState has no has_valid_position" in str(raised.value)
    assert "aiokafka==0.14.0" in str(raised.value)


def test_the_transport_does_not_import_when_a_hook_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(faust_consumer.ThreadDelegateConsumer, "_new_consumer_thread")
    with pytest.raises(UpstreamChanged, match="_new_consumer_thread"):
        importlib.reload(transport)  # raises before it redefines anything


def test_a_missing_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(app.consumer, "_read_offset")
    with pytest.raises(UpstreamChanged) as raised:
        upstream.check_instance(app.consumer)
    assert "a faust.transport.consumer.Consumer has no _read_offset" in str(raised.value)
    assert "faust-streaming==0.15.3" in str(raised.value)


async def _nothing(*_: Any) -> None:
    pass


def _renamed(owner: type, name: str) -> tuple[Hook, ...]:
    """HOOKS plus one for an attribute the installed version does not have."""
    return (*upstream.HOOKS, Hook(upstream.FAUST, owner, name, "a test", on_instances=True))


def test_making_the_consumer_checks_its_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "HOOKS", _renamed(faust_consumer.Consumer, "_renamed"))
    with pytest.raises(UpstreamChanged, match="has no _renamed"):
        app.transport.create_consumer(
            callback=_nothing, on_partitions_revoked=_nothing, on_partitions_assigned=_nothing
        )


async def test_making_the_aiokafka_consumer_checks_it_then_sets_the_fetch_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == settings.fetch_max_wait_ms
    finally:
        await consumer.stop()
    monkeypatch.setattr(upstream, "HOOKS", _renamed(aiokafka.AIOKafkaConsumer, "_renamed"))
    with pytest.raises(UpstreamChanged, match="AIOKafkaConsumer has no _renamed"):
        thread._create_worker_consumer(app.transport)


# ------------------------------------------------------------------ the fetch position


def _with_subscription(monkeypatch: pytest.MonkeyPatch, state: Any) -> None:
    aiokafka_consumer = SimpleNamespace(_subscription=state)
    thread = SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer)
    monkeypatch.setattr(app.consumer, "_thread", thread)


async def test_the_position_is_none_before_a_subscription_or_assignment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tp = ("events", 0)
    _with_subscription(monkeypatch, SimpleNamespace(subscription=None))
    assert await app.consumer._position(tp) is None
    _with_subscription(monkeypatch, SimpleNamespace(subscription=SimpleNamespace(assignment=None)))
    assert await app.consumer._position(tp) is None


async def test_the_position_is_read_from_aiokafkas_partition_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tp = aiokafka.TopicPartition("events", 0)
    assignment = subscription_state.Assignment([tp])
    subscription = SimpleNamespace(assignment=assignment)
    _with_subscription(monkeypatch, SimpleNamespace(subscription=subscription))
    assert await app.consumer._position(tp) is None  # no position yet
    assignment.state_value(tp).seek(41)
    assert await app.consumer._position(tp) == 41


async def test_a_renamed_subscription_state_raises_instead_of_reading_as_no_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _with_subscription(monkeypatch, SimpleNamespace(renamed_subscription=None))
    with pytest.raises(AttributeError, match="subscription"):
        await app.consumer._position(("events", 0))


def test_making_a_take_stream_checks_its_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "HOOKS", _renamed(faust.Stream, "_renamed"))
    with pytest.raises(UpstreamChanged, match="has no _renamed"):
        app.stream(app.channel())


def test_opening_a_tables_store_checks_its_attributes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(upstream, "HOOKS", _renamed(RocksDBStore, "_renamed"))
    table = BatchedTable(app, name="upstream-check", store=f"rocksdb://{tmp_path}")
    with pytest.raises(UpstreamChanged, match="has no _renamed"):
        table.data  # noqa: B018 (making the store is what is tested)
