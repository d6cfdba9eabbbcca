"""What the app changes in Faust's worker set-up: the garbage collector settled after
the first recovery, and no Monitor sensor booking every message."""

from __future__ import annotations

import gc

import pytest

from banking_app.runtime import faust_app as app_module
from banking_app.runtime import settings as settings_module
from banking_app.runtime.faust_app import GC_THRESHOLDS, app, settle_garbage_collector
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
        ("BANKING_PARTITIONS", "0", "BANKING_PARTITIONS must be at least 1"),
        ("BANKING_BATCH_SIZE", "0", "BANKING_BATCH_SIZE must be at least 1"),
        ("BANKING_BATCH_QUIET", "-0.1", "BANKING_BATCH_QUIET must be at least 0"),
        ("BANKING_BATCH_WINDOW", "nan", "BANKING_BATCH_WINDOW must be at least 0"),
        ("BANKING_BATCH_WINDOW", "soon", "BANKING_BATCH_WINDOW must be a number, got 'soon'"),
    ],
)
def test_a_setting_out_of_range_stops_the_worker_with_its_name(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(SystemExit) as stopped:
        settings_module.load()
    assert str(stopped.value) == message
