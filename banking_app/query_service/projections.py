"""The query side: projection agents that fold the ``events`` topic into read tables.

They read events only, never the command side's tables (CQRS), so the read model can be
rebuilt from the log. ``account-views`` and ``transactions`` are keyed by account, as
``events`` is; ``command-outcomes`` is keyed by command id, so the outcome events are
first repartitioned by command id onto ``command-outcome-events`` (as Faust's
``group_by`` would do, folded into the pass that already reads every event). A
``COMMAND_ID_REUSED`` refusal is filed under its own use of the id
(``events.outcome_key``), so ``GET /commands/{id}`` keeps showing the first use.

A record of ``command-outcome-events`` carries a JSON array of the events of one take
bound for its partition, not one event: the repartition then costs the outcome agent a
record per partition and take instead of a record per event (docs/BENCHMARKS.md). It
still accepts a record holding a single event, as earlier releases wrote them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import faust
from faust.types import EventT

from banking_app.domain import Event, event_from_dict
from banking_app.domain.events import outcome_key
from banking_app.query_service import read_model
from banking_app.runtime import codec, metrics
from banking_app.runtime.faults import faults
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import Bundles, KafkaOutbox
from banking_app.runtime.retries import (
    drop_staged,
    folded_or_skipped,
    stopping_or_rebalancing,
    until_handled,
)
from banking_app.runtime.settings import settings
from banking_app.runtime.streams import let_go, takes
from banking_app.runtime.tables import new_table, read_json, stage_json
from banking_app.runtime.topics import (
    ACCOUNT_VIEWS_TABLE,
    COMMAND_OUTCOMES_TABLE,
    TRANSACTIONS_TABLE,
    events_topic,
    hash_partition,
    outcome_events_topic,
)
from banking_app.runtime.turns import taking_turns

log = logging.getLogger(__name__)
T = TypeVar("T")

account_views_table = new_table(ACCOUNT_VIEWS_TABLE)
transactions_table = new_table(TRANSACTIONS_TABLE)
command_outcomes_table = new_table(COMMAND_OUTCOMES_TABLE)
VIEW_TABLES = (account_views_table, transactions_table)


def decode(value: bytes | None) -> Any:
    """A record's JSON value; ``None`` (logged) when it has none or it is not JSON."""
    try:
        data = codec.loads(value) if value is not None else None
    except ValueError as exc:
        log.error("skipping a record of events that is not JSON (%s): %r", exc, value[:200])
        return None
    if data is None:
        log.error("skipping a record of events without a value")
    return data


def read_event(data: Any) -> Event | None:
    """Decode an event of any schema version; a value that is not one is logged and skipped."""
    try:
        if not isinstance(data, dict):
            raise TypeError(f"an event is a JSON object, not {type(data).__name__}")
        return event_from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("skipping a record of events that is not an event (%s): %r", exc, data)
        return None


def read_events(value: bytes | None) -> list[Event]:
    """The events of a ``command-outcome-events`` record: a JSON array of them (a
    repartitioned take), or one event (as earlier releases wrote them)."""
    data = decode(value)
    if data is None:
        return []
    found = (read_event(item) for item in (data if isinstance(data, list) else [data]))
    return [event for event in found if event is not None]


class AccountProjection:
    """One take of events folded into account views and history lines.

    Each view is read once and written once per take, in its own partition; history
    lines are written before the view that makes them visible.
    """

    def __init__(self) -> None:
        self.views: dict[str, tuple[dict[str, Any] | None, int]] = {}
        self.changed: set[str] = set()
        self.lines: list[tuple[str, dict[str, Any], int]] = []
        self.outcomes = Bundles(outcome_events_topic)

    def fold(self, message: faust.types.Message) -> bool:
        faults.check("project")
        data = decode(message.value)
        event = read_event(data) if data is not None else None
        if event is None:
            return False
        if event.command_id:
            use = outcome_key(event)  # a refused reuse of an id is filed apart from it
            outcome_partition = hash_partition(codec.key(use), settings.partitions)
            self.outcomes.add(outcome_partition, message.value)
        partition = message.partition
        if event.account_id in self.views:
            view = self.views[event.account_id][0]
        else:
            view = read_json(account_views_table, event.account_id, partition)
        try:
            updated = read_model.apply_to_view(view, event)
        except read_model.SeqGap as gap:
            metrics.projection_gaps_total.inc()
            log.error("account view not updated: %s (run rebuild-projections)", gap)
            return False
        if updated is view or updated is None:
            return False
        item = read_model.history_item(event, updated)
        if item is not None:
            key = read_model.history_key(event.account_id, item["seq"])
            self.lines.append((key, item, partition))
        self.views[event.account_id] = (updated, partition)
        self.changed.add(event.account_id)
        return True

    async def write(self) -> None:
        async for key, item, partition in taking_turns(self.lines):
            stage_json(transactions_table, key, item, partition)
        async for account_id in taking_turns(self.changed):
            view, partition = self.views[account_id]
            stage_json(account_views_table, account_id, view, partition)


outbox = KafkaOutbox()


def folded(fold: Callable[[faust.types.Message], T], message: faust.types.Message) -> T | None:
    """``fold(message)``, tried twice; a record that fails both times is skipped.

    An account view then stops at the event before it (a later event's seq does not
    follow), which ``/metrics`` shows as a gap and ``rebuild-projections`` mends once
    the fold is fixed.
    """
    return folded_or_skipped(fold, message, "projections")


async def retried(
    name: str, handle: Callable[[], Awaitable[T]], records: Sequence[EventT], tables: Any
) -> T:
    """A projection's take, retried on failure (``banking_app.runtime.retries``)."""
    return await until_handled(
        handle,
        agent=name,
        records=len(records),
        discard=drop_staged(tables),
        stop_worker=app.crash,
        stopping=stopping_or_rebalancing,
        abandon=partial(let_go, records),
    )


@app.agent(events_topic)
async def project_accounts(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
    """Fold events into account views and histories, and repartition them by command.

    Views are stored before the repartitioned events are published, so by the time an
    outcome shows an event, every account view already shows it too (read-your-writes
    for ``?wait=true``). A crash between the two re-sends the events on reprocessing,
    which the outcome fold ignores (event ids).
    """
    async for records in takes(stream):
        yield await retried(
            "project_accounts", partial(project_account_take, records), records, VIEW_TABLES
        )


async def project_account_take(records: Sequence[EventT]) -> int:
    projection = AccountProjection()
    changed = 0
    async for record in taking_turns(records):
        changed += folded(projection.fold, record.message) or 0
    await projection.write()
    await outbox.flush(VIEW_TABLES)
    await outbox.publish(projection.outcomes.close())
    metrics.projected_total.labels("accounts").inc(changed)
    return changed


@app.agent(outcome_events_topic)
async def project_outcomes(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
    """Fold each command's events into its outcome, on the partition of its command id."""
    async for records in takes(stream):
        yield await retried(
            "project_outcomes",
            partial(project_outcome_take, records),
            records,
            (command_outcomes_table,),
        )


class OutcomeProjection:
    """One take of ``command-outcome-events`` folded into command outcomes."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[dict[str, Any], int]] = {}

    def fold(self, message: faust.types.Message) -> int:
        faults.check("project")
        partition = message.partition
        folded: dict[str, tuple[dict[str, Any], int]] = {}
        for event in read_events(message.value):
            if not event.command_id:
                continue
            use = outcome_key(event)
            if use in folded:
                outcome: dict[str, Any] | None = folded[use][0]
            elif use in self.outcomes:
                outcome = self.outcomes[use][0]
            else:
                outcome = read_json(command_outcomes_table, use, partition)
            folded[use] = (read_model.apply_to_outcome(outcome, event), partition)
        self.outcomes.update(folded)  # the record's events all, or none (see ``folded``)
        return len(folded)


async def project_outcome_take(records: Sequence[EventT]) -> int:
    projection = OutcomeProjection()
    async for record in taking_turns(records, every=1):
        folded(projection.fold, record.message)
    async for command_id, (outcome, partition) in taking_turns(projection.outcomes.items()):
        stage_json(command_outcomes_table, command_id, outcome, partition)
    await outbox.flush((command_outcomes_table,))
    metrics.projected_total.labels("outcomes").inc(len(projection.outcomes))
    return len(projection.outcomes)
