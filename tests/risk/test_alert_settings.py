"""The alert settings: defaults, the environment, and windows that are no whole hops."""

from __future__ import annotations

import os

import pytest

from banking_app.risk.agent import thresholds
from banking_app.risk.rules import Thresholds
from banking_app.runtime.settings import load_alerts


def test_the_defaults_are_the_rules_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BANKING_ALERT")]:
        monkeypatch.delenv(name)
    alerts = load_alerts()
    assert alerts.enabled
    assert thresholds(alerts) == Thresholds()


def test_the_environment_sets_each_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANKING_ALERTS", "0")
    monkeypatch.setenv("BANKING_ALERT_VELOCITY_COUNT", "9")
    monkeypatch.setenv("BANKING_ALERT_FAN_OUT_MINUTES", "30")
    monkeypatch.setenv("BANKING_ALERT_FAN_OUT_HOP_MINUTES", "10")
    monkeypatch.setenv("BANKING_ALERT_LARGE_FACTOR", "2.5")
    alerts = load_alerts()
    th = thresholds(alerts)
    assert not alerts.enabled
    assert (th.velocity_count, th.fan_out.minutes, th.fan_out.hop_minutes) == (9, 30, 10)
    assert th.large_factor == 2.5


@pytest.mark.parametrize(
    "name, value",
    [
        ("BANKING_ALERT_PROBING_HOP_MINUTES", "3"),  # 10 minutes is no whole number of 3
        ("BANKING_ALERT_VELOCITY_COUNT", "0"),
        ("BANKING_ALERT_PASS_THROUGH_PERCENT", "lots"),
        ("BANKING_ALERT_LARGE_FACTOR", "nan"),
    ],
)
def test_a_bad_setting_stops_the_worker_saying_which(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=name):
        load_alerts()
