"""The alert rules, told as stories: the state and the alerts after each step.

Defaults throughout (``Thresholds()``): velocity more than 5 in 10 minutes (hop 1),
large above 1,000,000 or 10 times the 30-day average after 5 movements, pass-through
80 % of at least 100,000 in 60 minutes (hop 5), fan-out more than 10 accounts in 60
minutes (hop 5), probing more than 3 refusals in 10 minutes (hop 1), grace 10 minutes.
"""

from __future__ import annotations

from typing import Any

import pytest
from stories import T0, Story, at

from banking_app.risk import rules
from banking_app.risk.rules import Thresholds, Window, step

TH = Thresholds()


class Run:
    """Steps one account's events through the rules, keeping the state and alerts."""

    def __init__(self, th: Thresholds = TH) -> None:
        self.th = th
        self.state: dict[str, Any] | None = None
        self.alerts: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> list[dict[str, Any]]:
        self.state, raised = step(self.state, event, self.th)
        self.alerts += raised
        return raised

    def count(self, rule: str) -> int:
        """The events a windowed rule holds in its panes."""
        assert self.state is not None
        return sum(pane[1] for pane in self.state[rule]["panes"])


def test_velocity_six_withdrawals_in_ten_minutes_raise_one_alert_for_the_burst() -> None:
    ann, run = Story("ann"), Run()
    for minute in range(5):
        assert run(ann.withdraw(100, minute)) == []
    assert run.count("velocity") == 5

    [alert] = run(ann.send("bob", 100, 5))  # the sixth: more than 5
    assert alert["rule"] == "velocity" and alert["severity"] == "medium"
    assert alert["account_id"] == "ann"
    # The earliest 10-minute window holding all six: it starts 4 minutes before the first.
    assert alert["window"] == {"start": at(-4), "end": at(6)}
    assert alert["evidence"] == [event.event_id for event in ann.events]
    assert alert["facts"] == {"count": 6, "limit": 5}
    assert alert["raised_at"] == at(5)

    # A seventh in the same burst: every window holding it overlaps the alerted one.
    assert run(ann.withdraw(100, 6)) == []
    assert run.count("velocity") == 7

    # Redelivered: the state has read it (its seq), and nothing is raised again.
    before = run.state
    assert step(before, ann.events[5], TH) == (before, [])

    # Half an hour later, a new burst clear of the first window: a second alert.
    for minute in range(30, 35):
        assert run(ann.withdraw(100, minute)) == []
    [second] = run(ann.withdraw(100, 35))
    assert second["window"] == {"start": at(26), "end": at(36)}
    assert second["alert_id"] != alert["alert_id"]
    # The first burst's panes are gone: their windows closed (35 >= 16 + 10 grace).
    assert run.count("velocity") == 6


def test_velocity_counts_no_deposit_and_no_refusal() -> None:
    ann, run = Story("ann"), Run()
    for minute in range(10):
        run(ann.deposit(100, minute / 2))
        run(ann.refused(minute / 2, reason="ACCOUNT_CLOSED"))
    assert [a["rule"] for a in run.alerts] == []
    assert run.state is not None and "velocity" not in run.state


def test_velocity_late_events_count_until_their_windows_close() -> None:
    ann, run = Story("ann"), Run()
    run(ann.deposit(10, 40))  # the watermark is minute 40
    # Stamped minute 33: its latest window [33, 43) closes at 43 + 10: still open.
    for _ in range(5):
        assert run(ann.withdraw(1, 33)) == []
    # Stamped minute 15: every window holding it closed at 25 + 10 = 35 <= 40: too late.
    assert run(ann.withdraw(1, 15)) == []
    assert run.count("velocity") == 5
    assert all(pane[0] >= T0 + 33 * 60_000 for pane in run.state["velocity"]["panes"])  # type: ignore[index]
    # A sixth at minute 34 completes the late burst: late, but within the grace.
    [alert] = run(ann.withdraw(1, 34))
    # The earliest window still open holding both minutes: [25, 35) closes at 45 > 40.
    assert alert["window"] == {"start": at(25), "end": at(35)}
    assert alert["raised_at"] == at(34)


def test_large_movement_against_the_fixed_limit_and_the_30_day_average() -> None:
    ann, run = Story("ann"), Run()
    # No history yet: only the fixed limit applies, however large the ratio.
    assert run(ann.deposit(100, 0)) == []
    assert run(ann.deposit(5_000, 1)) == []
    assert run.state["large"]["days"] == [[T0 // rules.DAY_MS, 5_100, 2]]  # type: ignore[index]
    for day in range(1, 4):
        run(ann.deposit(100, day * 24 * 60))
    # Five movements in 30 days: 5,400 / 5 = 1,080 on average. 10,800 is not above ten times.
    assert run(ann.withdraw(10_800, 4 * 24 * 60)) == []
    # Six now: 16,200 / 6 = 2,700; 27,001 is above ten times.
    [alert] = run(ann.withdraw(27_001, 4 * 24 * 60 + 1))
    assert (alert["rule"], alert["severity"]) == ("large_movement", "medium")
    assert alert["facts"] == {
        "amount": 27_001,
        "limit": 1_000_000,
        "average": 2_700,
        "factor": 10.0,
    }
    assert alert["evidence"] == [ann.events[-1].event_id]
    latest = (T0 + 4 * rules.DAY_MS) // rules.DAY_MS
    assert alert["window"] == {
        "start": rules.iso((latest - 29) * rules.DAY_MS),
        "end": rules.iso((latest + 1) * rules.DAY_MS),
    }
    # Above the fixed limit: high, whatever the average.
    [high] = run(ann.receive("bob", 1_000_001, 4 * 24 * 60 + 2))
    assert (high["severity"], high["facts"]["amount"]) == ("high", 1_000_001)
    assert high["alert_id"] == rules.alert_id(
        rules.Rule.LARGE_MOVEMENT, "ann", ann.events[-1].event_id
    )


def test_large_movement_keeps_thirty_days_and_judges_a_late_movement_too() -> None:
    ann, run = Story("ann"), Run()
    for day in range(40):
        run(ann.deposit(100, day * 24 * 60))
    days = run.state["large"]["days"]  # type: ignore[index]
    assert len(days) == 30 and days[0][0] == T0 // rules.DAY_MS + 10
    # Stamped 35 days back: not in the average any more, but still judged.
    [alert] = run(ann.withdraw(2_000_000, 4 * 24 * 60))
    assert alert["severity"] == "high"
    assert run.state["large"]["days"] == days  # type: ignore[index]


def test_pass_through_money_received_and_sent_on_within_the_hour() -> None:
    mule, run = Story("mule"), Run()
    assert run(mule.receive("victim", 200_000, 0)) == []
    assert run(mule.withdraw(100_000, 10)) == []  # half of it: not yet
    pane = run.state["pass_through"]["panes"][0]  # type: ignore[index]
    assert pane[1:5] == [200_000, 0, T0, None]
    [alert] = run(mule.send("elsewhere", 70_000, 20))  # 85 % of it now
    assert (alert["rule"], alert["severity"]) == ("pass_through", "high")
    assert alert["facts"] == {"received": 200_000, "sent": 170_000, "percent": 85}
    assert alert["evidence"] == [event.event_id for event in mule.events]
    # The earliest 60-minute window (hop 5) holding minute 20 and all three.
    assert alert["window"] == {"start": at(-35), "end": at(25)}
    # More sent on in the same hour: the same case, no second alert.
    assert run(mule.send("elsewhere", 30_000, 25)) == []


def test_pass_through_keeps_the_first_movements_of_each_hop_as_evidence() -> None:
    mule, run = Story("mule"), Run()
    received = [mule.receive(f"victim-{n}", 30_000, n / 10) for n in range(6)]
    for event in received:
        assert run(event) == []
    sent = [mule.send("elsewhere", 40_000, 1 + n / 10) for n in range(4)]
    raised = [alert for event in sent for alert in run(event)]
    # Six in and four out within one 5-minute hop: the pane keeps the first three of
    # each direction (its sums count them all), and those are the alert's evidence.
    [pane] = run.state["pass_through"]["panes"]  # type: ignore[index]
    assert pane[1:3] == [180_000, 160_000]
    assert pane[5] == [event.event_id for event in received[: rules.PANE_IDS]]
    assert pane[6] == [event.event_id for event in sent[: rules.PANE_IDS]]
    [alert] = raised
    assert alert["facts"] == {"received": 180_000, "sent": 160_000, "percent": 88}
    assert alert["evidence"] == pane[5] + pane[6]


def test_pass_through_needs_money_in_before_it_goes_out_and_enough_of_it() -> None:
    saver, run = Story("saver"), Run()
    run(saver.withdraw(500_000, 0))  # paid from savings, before anything came in
    assert run(saver.deposit(200_000, 1)) == []
    small, run_small = Story("small"), Run()
    run_small(small.deposit(50_000, 0))
    assert run_small(small.withdraw(50_000, 1)) == []  # below the 100,000 minimum


def test_fan_out_transfers_to_more_than_ten_accounts_in_an_hour() -> None:
    ann, run = Story("ann"), Run()
    for index in range(10):
        assert run(ann.send(f"to-{index}", 10, index * 5)) == []
        assert run(ann.send(f"to-{index}", 10, index * 5 + 1)) == []  # again: not distinct
    [alert] = run(ann.send("to-10", 10, 50))
    assert (alert["rule"], alert["severity"]) == ("fan_out", "high")
    assert alert["facts"] == {"accounts": 11, "limit": 10}
    # One transfer per destination, the first to each.
    assert alert["evidence"] == [event.event_id for event in ann.events[::2]]
    assert alert["window"] == {"start": at(-5), "end": at(55)}


def test_fan_out_over_more_than_an_hour_is_not_fan_out() -> None:
    ann, run = Story("ann"), Run()
    for index in range(20):
        assert run(ann.send(f"to-{index}", 10, index * 7)) == []
    # A pane keeps at most 11 destinations, and closed panes are dropped.
    for pane in run.state["fan_out"]["panes"]:  # type: ignore[index]
        assert len(pane[1]) <= 11


def test_probing_refused_withdrawals_and_transfers_in_ten_minutes() -> None:
    ann, run = Story("ann"), Run()
    assert run(ann.refused(0)) == []
    assert run(ann.refused(1, reason="LIMIT_EXCEEDED", command_type="TRANSFER_MONEY")) == []
    assert run(ann.refused(2, reason="CURRENCY_MISMATCH", command_type="TRANSFER_MONEY")) == []
    assert run(ann.refused(2, command_type="DEPOSIT")) == []
    assert run(ann.refused(3)) == []
    assert run.count("probing") == 3
    # Redelivered refusal (no seq): dropped by its id.
    before = run.state
    assert step(before, ann.events[0], TH) == (before, [])
    [alert] = run(ann.refused(4))
    assert (alert["rule"], alert["severity"]) == ("probing", "medium")
    counted = [ann.events[i].event_id for i in (0, 1, 4, 5)]
    assert alert["evidence"] == counted
    assert alert["facts"] == {"count": 4, "limit": 3}


def test_one_event_may_raise_several_rules_at_once() -> None:
    ann, run = Story("ann"), Run()
    run(ann.receive("x", 2_000_000, 0))  # large (high)
    raised = run(ann.send("y", 1_900_000, 1))  # large again, and pass-through
    assert [alert["rule"] for alert in raised] == ["large_movement", "pass_through"]


def test_an_event_no_rule_reads_leaves_the_state_alone() -> None:
    ann = Story("ann")
    refusal = ann.refused(0, reason="ACCOUNT_NOT_FOUND")
    assert step(None, refusal, TH) == (None, [])


def test_a_time_that_is_no_time_is_refused() -> None:
    ann = Story("ann")
    bad = ann.deposit(1, 0)
    object.__setattr__(bad, "occurred_at", "yesterday")
    with pytest.raises(ValueError):
        step(None, bad, TH)


def test_the_bank_s_timestamps_read_as_any_iso_8601_time_does() -> None:
    # ``millis`` parses the bank's own form once per second; every other form, and any
    # text that is no time, goes to ``datetime.fromisoformat`` as a whole.
    assert rules.millis("2026-03-02T09:05:00.123Z") == rules.millis("2026-03-02T09:05:00.123")
    assert rules.millis("2026-03-02T09:05:00.123Z") == rules.millis("2026-03-02T10:05:00.123+01:00")
    for bad in (
        "2026-03-02T09:05+01.123Z",
        "2026-02-30T09:05:00.123Z",
        "2026-03-02T09:05:00.\u0661\u0662\u0663Z",
    ):
        with pytest.raises(ValueError):
            rules.millis(bad)


def test_window_edges_clamp_at_the_end_of_time() -> None:
    ann, run = Story("ann"), Run(Thresholds(velocity_count=1, velocity=Window(10, 1)))
    late = rules.millis("9999-12-31T23:59:30.000Z")
    for offset in (0, 1):
        event = ann.withdraw(1, 0)
        object.__setattr__(event, "occurred_at", rules.iso(late + offset))
        run(event)
    [alert] = run.alerts
    assert alert["window"]["end"] == "9999-12-31T23:59:59.999Z"


def test_windows_must_be_whole_hops() -> None:
    with pytest.raises(ValueError):
        Window(10, 3)
    with pytest.raises(ValueError):
        Window(5, 10)


def test_the_api_description_names_every_rule() -> None:
    from banking_app.web.openapi import ALERT_RULES

    assert sorted(ALERT_RULES) == sorted(rule.value for rule in rules.Rule)
