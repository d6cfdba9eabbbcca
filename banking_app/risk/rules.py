"""The alert rules: one account's rule state and one event in, the new state and alerts out.

Pure: no Faust, Kafka, RocksDB, clock or randomness (``make lint`` checks the imports).
Every time is the event's own ``occurred_at`` (event time), never the time it arrives,
so folding an account's events again (a redelivery, ``rebuild-projections``) yields the
same alerts with the same ids, whatever the wall clock says.

**Time, per account.** An account's *watermark* is the latest ``occurred_at`` among the
events the rules have read of it. Events of one account arrive in one order, their
partition's, so the watermark after each event is a function of the account's events
alone; a watermark over a partition or the whole bank would depend on how accounts
interleave, and a rebuild could then see other windows close. Times can go backwards
within an account: a transfer's credit carries the timestamp of the transfer command,
and producers' clocks differ.

**Windows.** Rules 1, 3, 4 and 5 count over *hopping* windows of ``minutes`` that start
every ``hop_minutes`` (a window ``[start, start + minutes)``, ``start`` a multiple of the
hop since the epoch). The state keeps *panes*, one per hop, and a window is the sum of
its panes: the state is bounded by the window and the hop, not by the number of events.
A window *closes* once the account's watermark reaches its end plus the grace period
(``grace_minutes``); its panes are then dropped.

**Late events.** An event older than the watermark is still counted in every window
holding it that has not closed. When every window that would hold it has closed (its
pane ends more than ``minutes + grace_minutes`` before the watermark) it is *too late*
for that rule: counted nowhere, and it raises nothing. The large-movement rule judges
every movement, however late; a movement joins the 30-day average only while its day
is one of the 30 days kept.

**One alert per burst.** A window alerts at most once, and a window that overlaps one
that has alerted for the same rule does not alert: six withdrawals in a minute are one
velocity alert, not one for each of the ten 10-minute windows holding them. The next
alert of a rule needs a window clear of the last one's. An event that takes several
windows over a threshold raises one alert, for the earliest of them.

**Ids.** An alert's id is a UUIDv5 of the rule, the account, and the window's start (the
large-movement rule: the movement's event id), so a window alerts under one id however
often its events are processed. Copies of events are dropped before they are counted
(``seq`` no higher than the last one read, or a seq-less refusal's id among the last
``RECENT``), so a redelivered event never counts twice.

**Evidence.** The ids of the events that make the case: a window's events in time order,
at most ``MAX_EVIDENCE`` (the counts and sums cover them all). Each pane keeps the ids
its rule can need: the velocity and probing panes the first ``count + 1``, the fan-out
panes one transfer per destination up to ``accounts + 1`` destinations, the
pass-through panes the first ``PANE_IDS`` of each direction: the money that came in and
went out first in each hop, while the sums cover the rest. Those panes are what most of
an account's state is (every movement reads them), and each take writes the state
whole, so their ids are kept few.

The rules (``Thresholds`` holds their settings):

1. ``velocity``: more than ``velocity_count`` withdrawals or outgoing transfers
   (``MoneyWithdrawn``, ``TransferDebited``) in a ``velocity`` window. Medium.
2. ``large_movement``: one movement (deposit, withdrawal, transfer debit or credit) above
   ``large_limit``, or above ``large_factor`` times the account's average movement over
   the last 30 days, once it has made ``large_min_history`` movements in them. The
   average is kept as 30 daily sums and counts (UTC days, up to the watermark's), not the
   movements. High above the fixed limit, else medium. One alert per movement.
3. ``pass_through`` (the mule pattern): in a ``pass_through`` window, the account received
   (deposits, transfer credits) at least ``pass_through_min_amount`` and sent on
   (withdrawals, transfer debits) at least ``pass_through_percent`` % of it, some of it
   after the first money came in. High.
4. ``fan_out``: transfers to more than ``fan_out_accounts`` distinct accounts in a
   ``fan_out`` window. A pane keeps ``accounts + 1`` destinations at most, which decides
   "more than ``accounts``" exactly: if the window has more, its panes' kept sets do. High.
5. ``probing`` (card testing, probing a balance or a limit): more than
   ``probing_refusals`` withdrawals or transfers refused with ``INSUFFICIENT_FUNDS`` or
   ``LIMIT_EXCEEDED`` in a ``probing`` window. Medium.

The state is a JSON-ready dict, so the agent stores it as it is; ``step`` never changes
the state it is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any

from banking_app.domain import events as ev
from banking_app.domain.errors import Reason

MINUTE_MS = 60_000
DAY_MS = 86_400_000
#: The days the large-movement average covers: the watermark's and the 29 before it.
AVERAGE_DAYS = 30
#: Seq-less events (refusals) remembered per account to drop their copies.
RECENT = 16
#: An alert lists at most this many events as evidence.
MAX_EVIDENCE = 50
#: Ids of each direction a pass-through pane keeps (a state written with more, by an
#: earlier release, keeps them until its panes close).
PANE_IDS = 3
#: A fixed namespace, so alert ids are the same in every process and release.
ALERT_ID_NAMESPACE = uuid.UUID("3f6c2a8e-1d4b-4c7a-9e2f-7a5b8c9d0e1f")

State = dict[str, Any]
Alert = dict[str, Any]


class Rule(StrEnum):
    VELOCITY = "velocity"
    LARGE_MOVEMENT = "large_movement"
    PASS_THROUGH = "pass_through"
    FAN_OUT = "fan_out"
    PROBING = "probing"


@dataclass(frozen=True)
class Window:
    """Hopping windows of ``minutes``, one starting every ``hop_minutes``."""

    minutes: int
    hop_minutes: int

    def __post_init__(self) -> None:
        if self.hop_minutes < 1 or self.minutes < self.hop_minutes:
            raise ValueError("a window needs a hop of at least 1 minute, and no longer than it")
        if self.minutes % self.hop_minutes:
            raise ValueError(f"{self.minutes} minutes is not a whole number of hops")

    @property
    def size(self) -> int:
        return self.minutes * MINUTE_MS

    @property
    def hop(self) -> int:
        return self.hop_minutes * MINUTE_MS


@dataclass(frozen=True)
class Thresholds:
    """The rules' settings (``BANKING_ALERT_*``, ``banking_app.runtime.settings``)."""

    velocity_count: int = 5
    velocity: Window = field(default_factory=lambda: Window(10, 1))
    large_factor: float = 10.0
    large_limit: int = 1_000_000
    large_min_history: int = 5
    pass_through_percent: int = 80
    pass_through_min_amount: int = 100_000
    pass_through: Window = field(default_factory=lambda: Window(60, 5))
    fan_out_accounts: int = 10
    fan_out: Window = field(default_factory=lambda: Window(60, 5))
    probing_refusals: int = 3
    probing: Window = field(default_factory=lambda: Window(10, 1))
    grace_minutes: int = 10

    @property
    def grace(self) -> int:
        return self.grace_minutes * MINUTE_MS


#: The refusals the probing rule counts, and of which commands.
PROBING_REASONS = frozenset({Reason.INSUFFICIENT_FUNDS.value, Reason.LIMIT_EXCEEDED.value})
PROBING_COMMANDS = frozenset({"WITHDRAW", "TRANSFER_MONEY"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1
)


def millis(occurred_at: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time (UTC when it names no zone).

    The bank stamps events as ``2026-03-02T09:05:00.123Z`` (``codec.iso_timestamp``),
    and the events of a second share their first 19 characters: those are parsed once
    per second, which was most of this function's cost in the worker's profile.
    """
    if (
        len(occurred_at) == 24
        and occurred_at[19] == "."
        and occurred_at[23] == "Z"
        and occurred_at[20:23].isascii()
        and occurred_at[20:23].isdigit()
    ):
        return _second_millis(occurred_at[:19]) + int(occurred_at[20:23])
    return _parsed_millis(occurred_at)


@lru_cache(maxsize=1024)
def _second_millis(second: str) -> int:
    if datetime.fromisoformat(second).tzinfo is not None:
        raise ValueError(f"a zone before the fraction of a second: {second!r}")
    return _parsed_millis(second)


def _parsed_millis(occurred_at: str) -> int:
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def iso(ms: int) -> str:
    """``occurred_at``'s format; a window's edge past year 9999 (or before 1) is clamped."""
    moment = EPOCH + timedelta(milliseconds=min(max(ms, _MIN_MS), _MAX_MS))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_id(rule: Rule, account_id: str, instance: str) -> str:
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{rule.value}/{account_id}/{instance}"))


OUTGOING = (ev.MoneyWithdrawn, ev.TransferDebited)
INCOMING = (ev.MoneyDeposited, ev.TransferCredited)
MOVEMENTS = (*OUTGOING, *INCOMING)


#: The ``type`` of every event some rule reads (``reads`` narrows refusals further): the
#: agent decodes no other event into its class.
READ_TYPES = frozenset(cls.type for cls in (*MOVEMENTS, ev.CommandRejected))


def reads(event: ev.Event) -> bool:
    """Whether any rule reads ``event``: money movements and probing refusals."""
    if isinstance(event, MOVEMENTS):
        return True
    return (
        isinstance(event, ev.CommandRejected)
        and event.reason in PROBING_REASONS
        and event.command_type in PROBING_COMMANDS
    )


def step(state: State | None, event: ev.Event, th: Thresholds) -> tuple[State | None, list[Alert]]:
    """The account's rule state after ``event``, and the alerts it raises.

    ``state`` itself comes back, with no alerts, for an event no rule reads and for a
    copy of one already read. Raises ValueError for an ``occurred_at`` that is no time.
    """
    if not reads(event):
        return state, []
    if state is not None:
        if event.seq is not None and event.seq <= state["seq"]:
            return state, []
        if event.seq is None and event.event_id in state["recent"]:
            return state, []
    t = millis(event.occurred_at)
    old: State = state or {"watermark": t, "seq": 0, "recent": []}
    new: State = {**old, "watermark": max(old["watermark"], t)}
    if event.seq is not None:
        new["seq"] = event.seq
    else:
        new["recent"] = [*old["recent"], event.event_id][-RECENT:]
    alerts: list[Alert] = []
    watermark = new["watermark"]
    for key, rule in _rules_reading(type(event)):
        sub, alert = rule(new.get(key), event, t, watermark, th)
        if sub is not None:
            new[key] = sub
        if alert is not None:
            alerts.append(alert)
    return new, alerts


@cache
def _rules_reading(kind: type) -> tuple[tuple[str, Callable[..., Any]], ...]:
    """The rules that read events of ``kind``, in ``RULES``' order, as their state key and
    bound call: a deposit meets two rules of five, and calling a bound method skips the
    instance call's lookup (the two were a third of ``step`` in a profile)."""
    return tuple((rule.key, rule.__call__) for rule in RULES if issubclass(kind, rule.reads))


# --- hopping windows over panes -------------------------------------------------------

Pane = list[Any]


def _windowed(
    sub: State | None,
    t: int,
    watermark: int,
    window: Window,
    grace: int,
    add: Callable[[Pane | None, int], Pane],
    check: Callable[[list[Pane]], tuple[list[str], dict[str, Any]] | None],
    possible: Callable[[list[Pane]], bool],
) -> tuple[State, tuple[int, list[str], dict[str, Any]] | None]:
    """Count an event at ``t`` into its pane (``add``), and ``check`` every open window
    holding that pane, earliest first; the first that passes and overlaps no window
    alerted before gives ``(its start, evidence, facts)``.

    ``possible`` is asked first about every pane those windows cover together: a
    condition any passing window implies (a count over the threshold, money sent), so
    when it fails no window is checked, which is what most events of most accounts meet.
    """
    size, hop = window.size, window.hop
    sub = sub or {"panes": [], "alerted": []}
    panes = [p for p in sub["panes"] if p[0] + size + grace > watermark]
    # An alerted window is kept while any window that overlaps it can still be open.
    alerted = [a for a in sub["alerted"] if a + 2 * size + grace > watermark]
    start = t - t % hop
    if start + size + grace <= watermark:  # every window holding it has closed
        return {"panes": panes, "alerted": alerted}, None
    for index, pane in enumerate(panes):
        if pane[0] == start:
            panes[index] = add(pane, start)
            break
    else:
        panes.append(add(None, start))
        panes.sort(key=lambda p: p[0])
    covered = [p for p in panes if start - size < p[0] < start + size]
    if not possible(covered):
        return {"panes": panes, "alerted": alerted}, None
    found = None
    for first in range(start - size + hop, start + hop, hop):
        if first + size + grace <= watermark:
            continue  # closed
        if any(a < first + size and first < a + size for a in alerted):
            continue  # overlaps a window that has alerted
        verdict = check([p for p in covered if first <= p[0] < first + size])
        if verdict is not None:
            alerted.append(first)
            found = (first, *verdict)
            break
    return {"panes": panes, "alerted": alerted}, found


def _window_alert(
    rule: Rule,
    event: ev.Event,
    window: Window,
    found: tuple[int, list[str], dict[str, Any]],
    severity: str,
    detail: str,
) -> Alert:
    start, evidence, facts = found
    return {
        "alert_id": alert_id(rule, event.account_id, str(start)),
        "rule": rule.value,
        "account_id": event.account_id,
        "severity": severity,
        "window": {"start": iso(start), "end": iso(start + window.size)},
        "evidence": evidence[:MAX_EVIDENCE],
        "raised_at": event.occurred_at,
        "facts": facts,
        "detail": detail,
    }


def _counting(cap: int) -> Callable[[ev.Event], Callable[[Pane | None, int], Pane]]:
    """A pane of ``[start, count, ids]`` keeping the first ``cap`` ids."""

    def adder(event: ev.Event) -> Callable[[Pane | None, int], Pane]:
        def add(pane: Pane | None, start: int) -> Pane:
            count, ids = (pane[1], pane[2]) if pane else (0, [])
            return [start, count + 1, ids if len(ids) >= cap else [*ids, event.event_id]]

        return add

    return adder


def _counts_over(limit: int) -> Callable[[list[Pane]], bool]:
    return lambda panes: sum(p[1] for p in panes) > limit


def _more_than(limit: int) -> Callable[[list[Pane]], tuple[list[str], dict[str, Any]] | None]:
    def check(panes: list[Pane]) -> tuple[list[str], dict[str, Any]] | None:
        count = sum(p[1] for p in panes)
        if count <= limit:
            return None
        evidence = [i for p in panes for i in p[2]][: limit + 1]
        return evidence, {"count": count, "limit": limit}

    return check


class _RuleFn:
    """A rule: ``(its sub-state, event, t, watermark, thresholds) -> (sub-state, alert)``.
    A sub-state of ``None`` leaves the account's unchanged."""

    key: str
    #: The event classes it reads; it leaves the state alone for any other.
    reads: tuple[type[ev.Event], ...]

    def __call__(
        self, sub: State | None, event: ev.Event, t: int, watermark: int, th: Thresholds
    ) -> tuple[State | None, Alert | None]:
        raise NotImplementedError


class _CountingRule(_RuleFn):
    """More than a threshold of the events it ``reads`` in one window."""

    rule: Rule

    def settings(self, th: Thresholds) -> tuple[Window, int]:
        """Its window and the count a window must pass."""
        raise NotImplementedError

    def describe(self, count: int, window: Window, limit: int) -> str:
        raise NotImplementedError

    def __call__(
        self, sub: State | None, event: ev.Event, t: int, watermark: int, th: Thresholds
    ) -> tuple[State | None, Alert | None]:
        if not isinstance(event, self.reads):
            return None, None
        window, limit = self.settings(th)
        new, found = _windowed(
            sub,
            t,
            watermark,
            window,
            th.grace,
            _counting(limit + 1)(event),
            _more_than(limit),
            _counts_over(limit),
        )
        if found is None:
            return new, None
        detail = self.describe(found[2]["count"], window, limit)
        return new, _window_alert(self.rule, event, window, found, "medium", detail)


class Velocity(_CountingRule):
    key = "velocity"
    rule = Rule.VELOCITY
    reads = OUTGOING

    def settings(self, th: Thresholds) -> tuple[Window, int]:
        return th.velocity, th.velocity_count

    def describe(self, count: int, window: Window, limit: int) -> str:
        return (
            f"{count} withdrawals or outgoing transfers within {window.minutes} minutes "
            f"(more than {limit})"
        )


class Probing(_CountingRule):
    key = "probing"
    rule = Rule.PROBING
    reads = (ev.CommandRejected,)  # step's ``reads`` lets only probing refusals in

    def settings(self, th: Thresholds) -> tuple[Window, int]:
        return th.probing, th.probing_refusals

    def describe(self, count: int, window: Window, limit: int) -> str:
        return (
            f"{count} withdrawals or transfers refused for funds or limits within "
            f"{window.minutes} minutes (more than {limit})"
        )


class FanOut(_RuleFn):
    key = "fan_out"
    reads = (ev.TransferDebited,)

    def __call__(
        self, sub: State | None, event: ev.Event, t: int, watermark: int, th: Thresholds
    ) -> tuple[State | None, Alert | None]:
        if not isinstance(event, ev.TransferDebited):
            return None, None
        cap = th.fan_out_accounts + 1

        def add(pane: Pane | None, start: int) -> Pane:
            to = dict(pane[1]) if pane else {}
            if event.to_account_id not in to and len(to) < cap:
                to[event.to_account_id] = event.event_id
            return [start, to]

        def check(panes: list[Pane]) -> tuple[list[str], dict[str, Any]] | None:
            first: dict[str, str] = {}
            for pane in panes:
                for account, event_id in pane[1].items():
                    first.setdefault(account, event_id)
            if len(first) <= th.fan_out_accounts:
                return None
            facts = {"accounts": len(first), "limit": th.fan_out_accounts}
            return list(first.values())[:cap], facts

        def possible(panes: list[Pane]) -> bool:
            return len({account for pane in panes for account in pane[1]}) > th.fan_out_accounts

        new, found = _windowed(sub, t, watermark, th.fan_out, th.grace, add, check, possible)
        if found is None:
            return new, None
        detail = (
            f"transfers to more than {th.fan_out_accounts} distinct accounts within "
            f"{th.fan_out.minutes} minutes"
        )
        return new, _window_alert(Rule.FAN_OUT, event, th.fan_out, found, "high", detail)


class PassThrough(_RuleFn):
    """Panes of ``[start, received, sent, first in, last out, in ids, out ids]``."""

    key = "pass_through"
    reads = MOVEMENTS

    def __call__(
        self, sub: State | None, event: ev.Event, t: int, watermark: int, th: Thresholds
    ) -> tuple[State | None, Alert | None]:
        if not isinstance(event, MOVEMENTS):
            return None, None
        incoming = isinstance(event, INCOMING)
        amount: int = event.amount  # type: ignore[attr-defined]

        def add(pane: Pane | None, start: int) -> Pane:
            _, got, sent, first_in, last_out, ins, outs = pane or [start, 0, 0, None, None, [], []]
            if incoming:
                first_in = t if first_in is None else min(first_in, t)
                if len(ins) < PANE_IDS:
                    ins = [*ins, event.event_id]
                return [start, got + amount, sent, first_in, last_out, ins, outs]
            last_out = t if last_out is None else max(last_out, t)
            if len(outs) < PANE_IDS:
                outs = [*outs, event.event_id]
            return [start, got, sent + amount, first_in, last_out, ins, outs]

        def check(panes: list[Pane]) -> tuple[list[str], dict[str, Any]] | None:
            got = sum(p[1] for p in panes)
            sent = sum(p[2] for p in panes)
            if got < th.pass_through_min_amount or sent * 100 < th.pass_through_percent * got:
                return None
            first_in = min((p[3] for p in panes if p[3] is not None), default=None)
            last_out = max((p[4] for p in panes if p[4] is not None), default=None)
            if first_in is None or last_out is None or last_out < first_in:
                return None  # nothing left after money came in
            evidence = [i for p in panes for i in p[5]] + [i for p in panes for i in p[6]]
            return evidence, {"received": got, "sent": sent, "percent": sent * 100 // got}

        def possible(panes: list[Pane]) -> bool:
            # A passing window has received the minimum and sent a share of it.
            got = sum(p[1] for p in panes)
            sent = sum(p[2] for p in panes)
            least = th.pass_through_min_amount
            return got >= least and sent * 100 >= th.pass_through_percent * least

        new, found = _windowed(sub, t, watermark, th.pass_through, th.grace, add, check, possible)
        if found is None:
            return new, None
        facts = found[2]
        detail = (
            f"{facts['percent']} % of {facts['received']} received was sent on within "
            f"{th.pass_through.minutes} minutes (at least {th.pass_through_percent} %)"
        )
        return new, _window_alert(Rule.PASS_THROUGH, event, th.pass_through, found, "high", detail)


class LargeMovement(_RuleFn):
    """Daily ``[day, sum, count]`` of the account's movements, for the last 30 days."""

    key = "large"
    reads = MOVEMENTS

    def __call__(
        self, sub: State | None, event: ev.Event, t: int, watermark: int, th: Thresholds
    ) -> tuple[State | None, Alert | None]:
        if not isinstance(event, MOVEMENTS):
            return None, None
        amount: int = event.amount  # type: ignore[attr-defined]
        latest = watermark // DAY_MS
        days = [d for d in (sub or {"days": []})["days"] if d[0] > latest - AVERAGE_DAYS]
        total, count = sum(d[1] for d in days), sum(d[2] for d in days)
        alert = None
        above_limit = amount > th.large_limit
        above_average = count >= th.large_min_history and amount * count > th.large_factor * total
        if above_limit or above_average:
            facts: dict[str, Any] = {"amount": amount, "limit": th.large_limit}
            if count:
                facts["average"] = total // count
                facts["factor"] = th.large_factor
            detail = (
                f"a movement of {amount} above the limit of {th.large_limit}"
                if above_limit
                else f"a movement of {amount}, over {th.large_factor:g} times the "
                f"30-day average of {total // count}"
            )
            alert = {
                "alert_id": alert_id(Rule.LARGE_MOVEMENT, event.account_id, event.event_id),
                "rule": Rule.LARGE_MOVEMENT.value,
                "account_id": event.account_id,
                "severity": "high" if above_limit else "medium",
                "window": {
                    "start": iso((latest - AVERAGE_DAYS + 1) * DAY_MS),
                    "end": iso((latest + 1) * DAY_MS),
                },
                "evidence": [event.event_id],
                "raised_at": event.occurred_at,
                "facts": facts,
                "detail": detail,
            }
        day = t // DAY_MS
        if day > latest - AVERAGE_DAYS:  # its day is still one of the 30 kept
            for index, kept in enumerate(days):
                if kept[0] == day:
                    days[index] = [day, kept[1] + amount, kept[2] + 1]
                    break
            else:
                days.append([day, amount, 1])
                days.sort(key=lambda d: d[0])
        return {"days": days}, alert


#: Every rule, in the order its alerts are listed when one event raises several.
RULES: tuple[_RuleFn, ...] = (LargeMovement(), Velocity(), PassThrough(), FanOut(), Probing())


def fold(
    events: list[ev.Event], th: Thresholds, state: State | None = None
) -> tuple[State | None, list[Alert]]:
    """Every alert an account's events raise, in order (the tests' and rebuild's fold)."""
    raised: list[Alert] = []
    for event in events:
        state, alerts = step(state, event, th)
        raised += alerts
    return state, raised
