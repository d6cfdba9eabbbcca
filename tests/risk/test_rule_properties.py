"""Properties of the alert rules, for any account's events (hypothesis).

- Copies of events (a redelivery, a republished take) change no alert.
- Folding from a stored state (JSON, as the table keeps it) raises what one fold raises:
  a restart or a rebuild from any point gives the same alerts.
- An alert id is raised once, and an alert's evidence lies in its window.
- The state stays bounded by the windows, not by the number of events.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stories import Story

from banking_app.domain import events as ev
from banking_app.risk import rules
from banking_app.risk.rules import Thresholds, Window, fold

#: Low thresholds, so that short stories raise alerts of every rule.
TH = Thresholds(
    velocity_count=2,
    velocity=Window(10, 1),
    large_min_history=2,
    large_limit=1_000_000,
    pass_through_min_amount=1_000,
    pass_through=Window(30, 5),
    fan_out_accounts=2,
    fan_out=Window(30, 5),
    probing_refusals=1,
    probing=Window(10, 2),
    grace_minutes=5,
)

steps = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "withdraw", "send", "receive", "refused"]),
        st.integers(min_value=-20, max_value=60),  # minutes, out of order at times
        st.sampled_from([1, 700, 5_000, 2_000_000]),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    max_size=40,
)


def story(plan: list[tuple[str, int, int, str]]) -> list[ev.Event]:
    account = Story("acct")
    for kind, minute, amount, other in plan:
        if kind in {"deposit", "withdraw"}:
            getattr(account, kind)(amount, minute)
        elif kind in {"send", "receive"}:
            getattr(account, kind)(other, amount, minute)
        else:
            account.refused(minute, reason="LIMIT_EXCEEDED")
    return account.events


#: A shared 2-core machine: no timing assertions.
RELAXED = settings(deadline=None)


@RELAXED
@given(steps, st.data())
def test_copies_of_events_change_no_alert(plan: Any, data: st.DataObject) -> None:
    events = story(plan)
    with_copies = list(events)
    for event in data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []:
        # A copy comes after its original, a few events later at most.
        origin = with_copies.index(event)
        where = data.draw(st.integers(origin + 1, min(origin + 4, len(with_copies))))
        with_copies.insert(where, event)
    assert fold(with_copies, TH)[1] == fold(events, TH)[1]


@RELAXED
@given(steps, st.integers(min_value=0, max_value=40))
def test_a_fold_resumed_from_its_stored_state_raises_what_one_fold_raises(
    plan: Any, cut: int
) -> None:
    events = story(plan)
    state, first = fold(events[:cut], TH)
    stored = orjson.loads(orjson.dumps(state)) if state is not None else None
    _, rest = fold(events[cut:], TH, stored)
    assert first + rest == fold(events, TH)[1]


@RELAXED
@given(steps)
def test_alert_ids_are_raised_once_and_evidence_lies_in_its_window(plan: Any) -> None:
    events = story(plan)
    _, alerts = fold(events, TH)
    assert len({alert["alert_id"] for alert in alerts}) == len(alerts)
    times = {event.event_id: rules.millis(event.occurred_at) for event in events}
    for alert in alerts:
        assert alert["evidence"]
        if alert["rule"] == "large_movement":
            continue  # one movement, judged however late
        start, end = (rules.millis(alert["window"][edge]) for edge in ("start", "end"))
        for event_id in alert["evidence"]:
            assert start <= times[event_id] < end


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60 * 24 * 90), min_size=1, max_size=300))
def test_the_state_is_bounded_by_the_windows(minutes: list[int]) -> None:
    account = Story("busy")
    state = None
    for index, minute in enumerate(sorted(minutes)):
        kind = index % 4
        if kind == 0:
            event = account.deposit(700, minute)
        elif kind == 1:
            event = account.send(f"to-{index % 7}", 700, minute)
        elif kind == 2:
            event = account.withdraw(700, minute)
        else:
            event = account.refused(minute, reason="INSUFFICIENT_FUNDS")
        state, _ = rules.step(state, event, TH)
        assert state is not None
        assert len(state["large"]["days"]) <= rules.AVERAGE_DAYS
        assert len(state["recent"]) <= rules.RECENT
        for key, window in (
            ("velocity", TH.velocity),
            ("pass_through", TH.pass_through),
            ("fan_out", TH.fan_out),
            ("probing", TH.probing),
        ):
            if key not in state:
                continue
            bound = (window.size + TH.grace) // window.hop + 1
            assert len(state[key]["panes"]) <= bound
            assert len(state[key]["alerted"]) <= (2 * window.size + TH.grace) // window.hop + 1
    assert len(orjson.dumps(state)) < 20_000


@settings(max_examples=300, deadline=None)
@given(
    st.integers(
        min_value=rules.millis("0001-01-01T00:00:00.000Z"),
        max_value=rules.millis("9999-12-31T23:59:59.999Z"),
    )
)
def test_millis_reads_back_every_time_the_bank_writes(ms: int) -> None:
    assert rules.millis(rules.iso(ms)) == ms


#: Texts of 19 characters where a time's first 19 would be: times in the forms
#: ``fromisoformat`` reads (with a zone, a space, a week date), and anything at all.
seconds = st.one_of(
    st.builds(
        lambda moment, form: moment.strftime(form)[:19],
        st.datetimes(),
        st.sampled_from(
            ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M+01", "%G-W%V-%uT%H:%M:%S"]
        ),
    ),
    st.text(alphabet="0123456789-T:+Z W.", min_size=19, max_size=19),
)


@settings(max_examples=500, deadline=None)
@given(seconds, st.text(alphabet="0123456789:Z", min_size=3, max_size=3))
def test_millis_of_the_bank_s_form_is_what_a_whole_parse_gives(second: str, fraction: str) -> None:
    # The once-per-second parse may not accept a text the whole parse refuses, nor read
    # one another way.
    text = f"{second}.{fraction}Z"
    try:
        expected = rules._parsed_millis(text)
    except ValueError:
        with pytest.raises(ValueError):
            rules.millis(text)
    else:
        assert rules.millis(text) == expected
