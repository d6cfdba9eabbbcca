"""The alert agent under Faust's agent harness (memory tables, no broker): each rule's
story told through ``events``, redelivery, and hostile records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from stories import Story, at

from banking_app.domain import events as ev
from banking_app.risk import agent as risk
from banking_app.risk.agent import alerts_table, detect_alerts, risk_state_table
from banking_app.risk.rules import millis
from banking_app.runtime import codec, metrics
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import RecordingOutbox
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import alerts_topic, partition_for


@pytest.fixture()
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    assert str(app.conf.store).startswith("memory:"), "tests/conftest.py sets it"
    app.finalize()
    monkeypatch.setattr(risk, "outbox", RecordingOutbox())
    try:
        async with detect_alerts.test_context() as agent:  # type: ignore[attr-defined]
            yield agent
    finally:
        for table in (alerts_table, risk_state_table):
            table.data.clear()


async def put(agent: Any, value: ev.Event | bytes, account: str = "") -> None:
    if isinstance(value, ev.Event):
        account, value = value.account_id, codec.dumps(value.to_dict())
    key = codec.key(account)
    await agent.put(value, key=key, partition=partition_for(key, 8))


def sent() -> list[dict[str, Any]]:
    """The alerts on the alerts topic so far, each checked to be keyed by its account."""
    found = []
    for record in risk.outbox.on(alerts_topic):  # type: ignore[attr-defined]
        alert = codec.loads(record.value)
        assert record.key == codec.key(alert["account_id"])
        found.append(alert)
    return found


def stored(account: str) -> list[dict[str, Any]]:
    listing = get_json(alerts_table, account)
    return listing["alerts"] if listing else []


def velocity(story: Story) -> list[ev.Event]:
    return [story.withdraw(100, minute) for minute in range(5)] + [story.send("x", 1, 5)]


def large(story: Story) -> list[ev.Event]:
    return [story.deposit(100, day * 24 * 60) for day in range(5)] + [
        story.withdraw(5_000, 5 * 24 * 60)
    ]


def pass_through(story: Story) -> list[ev.Event]:
    return [story.receive("v", 200_000, 0), story.withdraw(90_000, 10), story.send("z", 90_000, 40)]


def fan_out(story: Story) -> list[ev.Event]:
    return [story.send(f"to-{i}", 5, i * 4) for i in range(11)]


def probing(story: Story) -> list[ev.Event]:
    return [story.refused(minute / 2, reason="LIMIT_EXCEEDED") for minute in range(4)]


@pytest.mark.parametrize(
    "plot, rule",
    [
        (velocity, "velocity"),
        (large, "large_movement"),
        (pass_through, "pass_through"),
        (fan_out, "fan_out"),
        (probing, "probing"),
    ],
)
async def test_each_rule_raises_its_alert_on_the_event_that_completes_the_case(
    harness: Any, plot: Callable[[Story], list[ev.Event]], rule: str
) -> None:
    story = Story(f"acct-{rule}")
    events = plot(story)
    for event in events[:-1]:
        await put(harness, event)
        assert sent() == [] and stored(story.account_id) == []
    await put(harness, events[-1])

    [alert] = sent()
    assert (alert["rule"], alert["account_id"]) == (rule, story.account_id)
    assert alert["raised_at"] == events[-1].occurred_at
    assert events[-1].event_id in alert["evidence"]
    assert set(alert) >= {"alert_id", "window", "evidence", "severity"}
    assert stored(story.account_id) == [alert]
    state = get_json(risk_state_table, story.account_id)
    assert state["watermark"] == max(millis(event.occurred_at) for event in events)


async def test_an_event_processed_twice_raises_no_second_alert(harness: Any) -> None:
    story = Story("twice")
    for event in velocity(story):
        await put(harness, event)
    [alert] = sent()

    # Redelivered (a restart from an older offset, a republished take): a new offset,
    # the same event. The state has read it.
    await put(harness, story.events[-1])
    for event in story.events:
        await put(harness, event)
    assert sent() == [alert]
    assert stored("twice") == [alert]

    # The state lost (a crash after the alert was published, before the state was
    # written): the take raises the same alert again, under the same id, and the
    # alert table keeps it once.
    risk_state_table.data.clear()
    for event in story.events:
        await put(harness, event)
    assert sent() == [alert, alert]
    assert stored("twice") == [alert]


async def test_hostile_records_are_skipped_and_their_neighbours_handled(harness: Any) -> None:
    story = Story("hostile")
    first = velocity(story)
    failures = metrics.processing_failures_total.labels("alerts")._value.get()
    bad_time = {**first[0].to_dict(), "event_id": "bad-time", "seq": 99, "occurred_at": "soon"}
    for value in (
        b"not json",
        b"[1, 2]",
        b"null",
        codec.dumps({"type": "MoneyWithdrawn"}),  # no fields
        codec.dumps({"type": "NoSuchEvent", "account_id": "hostile"}),
        codec.dumps(bad_time),  # an occurred_at that is no time
    ):
        await put(harness, value, "hostile")
    assert metrics.processing_failures_total.labels("alerts")._value.get() == failures + 1
    for event in first:
        await put(harness, event)
    [alert] = sent()
    assert alert["evidence"] == [event.event_id for event in first]


def test_the_agent_decodes_only_the_events_its_rules_read(caplog: pytest.LogCaptureFixture) -> None:
    """Most of a bank's events are no rule's (openings, limits): they are skipped before
    they are made into their class, and junk is still logged, not taken for one."""
    opened = ev.AccountCreated(
        event_id="e-open",
        command_id="c-open",
        account_id="ann",
        occurred_at=at(0),
        seq=1,
        owner="Ann",
        currency="EUR",
        overdraft_limit=0,
    )
    deposit = Story("ann").deposit(500, 1)
    assert risk.read_event(codec.dumps(opened.to_dict())) is None
    assert risk.read_event(codec.dumps(deposit.to_dict())) == deposit
    caplog.clear()
    assert risk.read_event(b'{"type": "NoSuchEvent", "account_id": "ann"}') is None
    assert "not an event" in caplog.text
