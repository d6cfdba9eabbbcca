"""The alert agent: the risk rules (``rules``) run over ``events``, into ``alerts``.

``detect_alerts`` reads ``events`` (keyed by account) beside the projections, and keeps
each account's rule state in the ``risk-state`` table, keyed by account, in the
account's partition. What the rules raise goes on the ``alerts`` topic (plain JSON,
keyed by account) and into the ``account-alerts`` table (an account's alerts, for
``GET /accounts/{id}/alerts`` and ``GET /alerts``).

**Why not Faust's windowed tables.** Faust's hopping and tumbling tables close windows
by a timer against the partition's latest timestamp (``Table._del_old_keys`` runs every
``table_cleanup_interval``), so what a late event still finds depends on when the timer
last ran, and a rebuild could raise other alerts. They hold one value per window, where
the pass-through rule needs money in and out together and fan-out a set of accounts;
and they write through Faust's per-key changelog path, not a take at a time with the
agent's outputs (``runtime.tables.BatchedTable``), which is what makes redelivery safe
here. So the state is a plain changelog table whose value holds each rule's window
panes, and windows close by the account's own event-time watermark (``rules``).

**Redelivery.** A take is handled as the projections handle theirs
(docs/at-least-once.md): the rules are folded over the take (a record that fails twice
is skipped and counted), the take's alerts are published and acknowledged, and only then
the rule states and alert lists are written, to their changelogs and then to the local
store. A take handled again (a crash, a retry, a restart from an older offset) meets
states that have read its events (each event's ``seq``, or a refusal's id, is in the
state) and raises nothing; a crash between the publish and the state write re-sends the
same alerts with the same ids, which the alert table stores once. A consumer of the
``alerts`` topic dedupes by ``alert_id``.

Off (``BANKING_ALERTS=0``), the agent is not registered at all: no cost, no alerts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import Counter

from banking_app.domain import Event, event_from_dict
from banking_app.domain.events import EVENT_TYPES
from banking_app.risk import rules
from banking_app.runtime import codec, metrics
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import KafkaOutbox, Outbox, Record
from banking_app.runtime.retries import (
    drop_staged,
    folded_or_skipped,
    stopping_or_rebalancing,
    until_handled,
)
from banking_app.runtime.settings import AlertSettings, settings
from banking_app.runtime.streams import let_go, takes
from banking_app.runtime.tables import new_table as _new_table
from banking_app.runtime.tables import read_json, stage_json
from banking_app.runtime.topics import (
    ALERTS_TABLE,
    RISK_STATE_TABLE,
    alerts_topic,
    events_topic,
)
from banking_app.runtime.turns import taking_turns

log = logging.getLogger(__name__)

risk_state_table = _new_table(RISK_STATE_TABLE)
alerts_table = _new_table(ALERTS_TABLE)
RISK_TABLES = (risk_state_table, alerts_table)
#: The alerts an account's entry in ``account-alerts`` keeps: its latest.
KEPT_PER_ACCOUNT = 100

alerts_total = Counter(
    "banking_alerts_total", "Alerts raised, by rule", ["rule"], registry=metrics.registry
)
#: The benchmark's per-event cost of the agent (``python -m bench --alerts-compare``).
alert_events_total = Counter(
    "banking_alert_events", "Records of events the alert agent handled", registry=metrics.registry
)
alert_seconds_total = Counter(
    "banking_alert_seconds",
    "Seconds the alert agent spent decoding, running the rules on, and staging its records "
    "(its waits for the broker left out)",
    registry=metrics.registry,
)


def thresholds(alerts: AlertSettings) -> rules.Thresholds:
    """The rules' thresholds from the worker's settings (``BANKING_ALERT_*``)."""
    return rules.Thresholds(
        velocity_count=alerts.velocity_count,
        velocity=rules.Window(alerts.velocity_minutes, alerts.velocity_hop_minutes),
        large_factor=alerts.large_factor,
        large_limit=alerts.large_limit,
        large_min_history=alerts.large_min_history,
        pass_through_percent=alerts.pass_through_percent,
        pass_through_min_amount=alerts.pass_through_min_amount,
        pass_through=rules.Window(alerts.pass_through_minutes, alerts.pass_through_hop_minutes),
        fan_out_accounts=alerts.fan_out_accounts,
        fan_out=rules.Window(alerts.fan_out_minutes, alerts.fan_out_hop_minutes),
        probing_refusals=alerts.probing_refusals,
        probing=rules.Window(alerts.probing_minutes, alerts.probing_hop_minutes),
        grace_minutes=alerts.grace_minutes,
    )


THRESHOLDS = thresholds(settings.alerts)


def read_event(value: bytes | None) -> Event | None:
    """The event a record of ``events`` holds, when it is of a type some rule reads;
    None for the others (most of a bank's events: openings, limits, legs) and, logged,
    for anything that is no event."""
    try:
        data = codec.loads(value) if value is not None else None
        if not isinstance(data, dict):
            raise TypeError(f"an event is a JSON object, not {type(data).__name__}")
        kind = data.get("type")
        if kind in EVENT_TYPES and kind not in rules.READ_TYPES:
            return None  # an event no rule reads: not decoded into its class
        return event_from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("alerts: skipping a record of events that is not an event (%s)", exc)
        return None


def with_alerts(listing: dict[str, Any] | None, account_id: str, new: list[rules.Alert]) -> Any:
    """An account's entry of ``account-alerts`` with ``new`` added: each id once, the
    latest ``KEPT_PER_ACCOUNT`` kept, in the order they were raised."""
    listing = listing or {"account_id": account_id, "alerts": []}
    known = {alert["alert_id"] for alert in listing["alerts"]}
    added = [alert for alert in new if alert["alert_id"] not in known]
    if not added:
        return listing
    return {**listing, "alerts": [*listing["alerts"], *added][-KEPT_PER_ACCOUNT:]}


class RiskFold:
    """One take of events folded into rule states and alerts, each account's state read
    once and written once per take."""

    def __init__(self, th: rules.Thresholds) -> None:
        self.th = th
        self.states: dict[str, tuple[rules.State | None, int]] = {}
        self.raised: dict[str, tuple[list[rules.Alert], int]] = {}

    def fold(self, message: faust.types.Message) -> int:
        event = read_event(message.value)
        if event is None or not rules.reads(event):
            return 0
        account, partition = event.account_id, message.partition
        if account in self.states:
            state = self.states[account][0]
        else:
            state = read_json(risk_state_table, account, partition)
        new, alerts = rules.step(state, event, self.th)
        if new is state:
            return 0
        self.states[account] = (new, partition)  # only once the step has succeeded
        if alerts:
            self.raised.setdefault(account, ([], partition))[0].extend(alerts)
        return 1

    def alert_records(self) -> list[Record]:
        return [
            Record(alerts_topic, codec.key(account), codec.dumps(alert), partition=partition)
            for account, (alerts, partition) in self.raised.items()
            for alert in alerts
        ]

    async def write(self) -> float:
        """Stage the take's alert lists and states; the seconds spent doing so (the
        turns given to other tasks left out)."""
        busy = 0.0
        async for account, (alerts, partition) in taking_turns(self.raised.items()):
            started = time.perf_counter()
            listing = read_json(alerts_table, account, partition)
            updated = with_alerts(listing, account, alerts)
            if updated is not listing:
                stage_json(alerts_table, account, updated, partition)
            busy += time.perf_counter() - started
        async for account, (state, partition) in taking_turns(self.states.items()):
            started = time.perf_counter()
            stage_json(risk_state_table, account, state, partition)
            busy += time.perf_counter() - started
        return busy


outbox: Outbox = KafkaOutbox()


async def alert_take(records: Sequence[EventT], th: rules.Thresholds | None = None) -> int:
    fold = RiskFold(th or THRESHOLDS)
    busy = 0.0
    async for record in taking_turns(records):
        started = time.perf_counter()
        folded_or_skipped(fold.fold, record.message, "alerts")
        busy += time.perf_counter() - started
    # The alerts first: a crash before the states are written re-sends the same ones.
    await outbox.publish(fold.alert_records())
    busy += await fold.write()
    await outbox.flush(RISK_TABLES)
    alert_events_total.inc(len(records))
    alert_seconds_total.inc(busy)
    raised = 0
    for alerts, _ in fold.raised.values():
        for alert in alerts:
            alerts_total.labels(alert["rule"]).inc()
            raised += 1
    return raised


async def detect_alerts(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
    """Run the risk rules over events; raise alerts on the alerts topic and table."""
    async for records in takes(stream):
        yield await until_handled(
            partial(alert_take, records),
            agent="detect_alerts",
            records=len(records),
            discard=drop_staged(RISK_TABLES),
            stop_worker=app.crash,
            stopping=stopping_or_rebalancing,
            abandon=partial(let_go, records),
        )


if settings.alerts.enabled:
    detect_alerts = app.agent(events_topic)(detect_alerts)  # type: ignore[assignment]
