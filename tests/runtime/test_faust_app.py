"""What the app changes in Faust's worker set-up: the garbage collector settled after
the first recovery, and no Monitor sensor booking every message."""

from __future__ import annotations

import gc

import faust
import pytest
from faust.types.enums import ProcessingGuarantee

from banking_app.runtime import faust_app as app_module
from banking_app.runtime import settings as settings_module
from banking_app.runtime.faust_app import (
    GC_THRESHOLDS,
    app,
    forwarding_client,
    require_at_least_once,
    settle_garbage_collector,
)
from banking_app.runtime.streams import QuietTakeStream


async def test_the_first_recovery_settles_the_garbage_collector_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settled: list[bool] = []
    monkeypatch.setattr(app_module, "settle_garbage_collector", lambda: settled.append(True))
    monkeypatch.setattr(app, "_gc_settled", False)

    await app.on_rebalance_complete.send()
    await app.on_rebalance_complete.send()  # a later rebalance

    assert settled == [True]


def test_settling_freezes_what_is_alive_and_sets_the_thresholds() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_faust_monitor_is_not_a_sensor_of_the_worker() -> None:
    app.on_init_dependencies()  # what the worker calls as it starts
    assert app.monitor not in list(app.sensors)


def test_agent_streams_buffer_as_many_records_as_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANKING_STREAM_BUFFER", "12345")
    assert settings_module.load().stream_buffer == 12345
    # The app's own streams: what Faust sizes each agent's channel queue with.
    assert app.conf.stream_buffer_maxsize == settings_module.settings.stream_buffer
    assert app.conf.stream_buffer_maxsize > 4096  # Faust's default paused fetching


def test_agents_take_quietly_with_the_configured_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANKING_BATCH_QUIET", "0.02")
    monkeypatch.setenv("BANKING_BATCH_WINDOW", "0.5")
    loaded = settings_module.load()
    assert (loaded.batch_quiet, loaded.batch_window) == (0.02, 0.5)
    # Every stream of the app, the agents' included, can take quietly.
    assert app.conf.Stream is QuietTakeStream


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("BANKING_STREAM_BUFFER", "0", "BANKING_STREAM_BUFFER must be at least 1"),
        ("BANKING_STREAM_BUFFER", "-5", "BANKING_STREAM_BUFFER must be at least 1"),
        ("BANKING_STREAM_BUFFER", "lots", "BANKING_STREAM_BUFFER must be an integer, got 'lots'"),
        ("BANKING_STREAM_BUFFER_KB", "-1", "BANKING_STREAM_BUFFER_KB must be at least 0"),
        (
            "BANKING_STREAM_BUFFER_KB",
            "4MiB",
            "BANKING_STREAM_BUFFER_KB must be an integer, got '4MiB'",
        ),
        ("BANKING_PARTITIONS", "0", "BANKING_PARTITIONS must be at least 1"),
        ("BANKING_BATCH_SIZE", "0", "BANKING_BATCH_SIZE must be at least 1"),
        ("BANKING_BATCH_BYTES", "0", "BANKING_BATCH_BYTES must be at least 1"),
        ("BANKING_BATCH_QUIET", "-0.1", "BANKING_BATCH_QUIET must be at least 0"),
        ("BANKING_BATCH_WINDOW", "nan", "BANKING_BATCH_WINDOW must be at least 0"),
        ("BANKING_BATCH_WINDOW", "soon", "BANKING_BATCH_WINDOW must be a number, got 'soon'"),
        ("BANKING_FORWARD_TIMEOUT", "0", "BANKING_FORWARD_TIMEOUT must be at least 0.1"),
        ("BANKING_FORWARD_TIMEOUT", "nan", "BANKING_FORWARD_TIMEOUT must be at least 0.1"),
        ("BANKING_FORWARD_TIMEOUT", "inf", "BANKING_FORWARD_TIMEOUT must be at most 60"),
        ("BANKING_FORWARD_TIMEOUT", "61", "BANKING_FORWARD_TIMEOUT must be at most 60"),
        ("BANKING_FORWARD_TIMEOUT", "soon", "BANKING_FORWARD_TIMEOUT must be a number, got 'soon'"),
    ],
)
def test_a_setting_out_of_range_stops_the_worker_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SystemExit) as stopped:
        settings_module.load()
    assert str(stopped.value) == message


def test_forwarded_reads_wait_a_few_seconds_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANKING_FORWARD_TIMEOUT", raising=False)
    assert settings_module.load().forward_timeout == 5.0
    monkeypatch.setenv("BANKING_FORWARD_TIMEOUT", "0.5")
    assert settings_module.load().forward_timeout == 0.5


async def test_requests_forwarded_to_other_workers_end_after_the_forward_timeout() -> None:
    """Faust's table_route forwards through app.http_client, and sets no timeout itself."""
    assert app.conf.HttpClient is forwarding_client
    async with forwarding_client() as client:
        assert client.timeout.total == settings_module.settings.forward_timeout


@pytest.mark.parametrize("raw", ["exactly_once", "EXACTLY_ONCE", "at-least-once", "none"])
def test_a_processing_guarantee_but_at_least_once_stops_the_worker_saying_why(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("BANKING_PROCESSING_GUARANTEE", raw)
    with pytest.raises(SystemExit) as stopped:
        settings_module.load()
    message = str(stopped.value)
    assert message.startswith(f"BANKING_PROCESSING_GUARANTEE={raw!r} is not supported.")
    assert "exactly_once is not offered" in message
    assert "outside Faust's Kafka transactions" in message
    assert "set it to at_least_once" in message


@pytest.mark.parametrize("raw", ["", "at_least_once"])
def test_at_least_once_is_what_the_app_runs(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BANKING_PROCESSING_GUARANTEE", raw)
    assert not hasattr(settings_module.load(), "processing_guarantee")
    assert app.conf.processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    require_at_least_once(app.conf)


def test_fausts_own_processing_guarantee_variable_is_refused_too() -> None:
    """Faust reads PROCESSING_GUARANTEE from the environment over what the app passes."""
    conf = faust.Settings("probe", env={"PROCESSING_GUARANTEE": "exactly_once"})
    assert conf.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
    with pytest.raises(SystemExit, match=r"^PROCESSING_GUARANTEE='exactly_once' is not supported"):
        require_at_least_once(conf)
