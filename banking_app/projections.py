"""The query side: projection agents that fold the ``events`` topic into read tables.

They read events only, never the command side's tables (CQRS), so the read model can be
rebuilt from the log. ``account-views`` and ``transactions`` are keyed by account, as
``events`` is; ``command-outcomes`` is keyed by command id, so the outcome events are
first re-keyed by command id onto ``command-outcome-events`` (a repartition, as Faust's
``group_by`` would do, folded into the pass that already reads every event).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT

from banking_app import codec, metrics, read_model
from banking_app.app import app
from banking_app.domain import Event, event_from_dict
from banking_app.outbox import KafkaOutbox, Record
from banking_app.settings import settings
from banking_app.tables import acting_as, get_json, new_table, put_json
from banking_app.topics import OUTPUT_TOPICS, events_topic, outcome_events_topic
from banking_app.turns import taking_turns

log = logging.getLogger(__name__)

account_views_table = new_table("account-views")
transactions_table = new_table("transactions")
command_outcomes_table = new_table("command-outcomes")


def read_event(value: bytes) -> Event | None:
    """Decode an event of any schema version; a record that is not one is logged and skipped."""
    try:
        return event_from_dict(codec.loads(value))
    except (ValueError, KeyError, TypeError) as exc:
        log.error("skipping a record of events that is not an event (%s): %r", exc, value[:200])
        return None


class AccountProjection:
    """One take of events folded into account views and history lines.

    Each view is read once and written once per take, under a record of its own
    partition; history lines are written before the view that makes them visible.
    """

    def __init__(self) -> None:
        self.views: dict[str, tuple[dict[str, Any] | None, EventT]] = {}
        self.changed: set[str] = set()
        self.lines: list[tuple[str, dict[str, Any], EventT]] = []
        self.outcome_records: list[Record] = []

    def fold(self, record: EventT) -> bool:
        event = read_event(record.message.value)
        if event is None:
            return False
        if event.command_id:
            self.outcome_records.append(
                Record(outcome_events_topic, codec.key(event.command_id), record.message.value)
            )
        if event.account_id in self.views:
            view = self.views[event.account_id][0]
        else:
            with acting_as(record):
                view = get_json(account_views_table, event.account_id)
        try:
            updated = read_model.apply_to_view(view, event)
        except read_model.SeqGap as gap:
            metrics.projection_gaps_total.inc()
            log.error("account view not updated: %s (run rebuild-projections)", gap)
            return False
        if updated is view or updated is None:
            return False
        item = read_model.history_item(event)
        if item is not None:
            self.lines.append((read_model.history_key(event.account_id, item["seq"]), item, record))
        self.views[event.account_id] = (updated, record)
        self.changed.add(event.account_id)
        return True

    async def write(self) -> None:
        async for key, item, record in taking_turns(self.lines):
            with acting_as(record):
                put_json(transactions_table, key, item)
        async for account_id in taking_turns(self.changed):
            view, record = self.views[account_id]
            with acting_as(record):
                put_json(account_views_table, account_id, view)


outbox = KafkaOutbox(OUTPUT_TOPICS)


@app.agent(events_topic)
async def project_accounts(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
    """Fold events into account views and histories, and re-key the events by command.

    Views are written before the re-keyed copies are published, so by the time an outcome
    shows an event, every account view already shows it too (read-your-writes for
    ``?wait=true``). A crash between the two re-sends the copies on reprocessing, which
    the outcome fold ignores (event ids).
    """
    async for records in stream.take_events(settings.batch_size, within=settings.batch_window):
        projection = AccountProjection()
        changed = 0
        async for record in taking_turns(records):
            changed += projection.fold(record)
        await projection.write()
        await outbox.publish(projection.outcome_records)
        await outbox.flush()  # one produce batch per take (README: broker quirks)
        metrics.projected_total.labels("accounts").inc(changed)
        yield changed


@app.agent(outcome_events_topic)
async def project_outcomes(stream: faust.StreamT[bytes]) -> AsyncIterator[int]:
    """Fold each command's events into its outcome, on the partition of its command id."""
    async for records in stream.take_events(settings.batch_size, within=settings.batch_window):
        outcomes: dict[str, tuple[dict[str, Any], EventT]] = {}
        async for record in taking_turns(records):
            event = read_event(record.message.value)
            if event is None or not event.command_id:
                continue
            if event.command_id in outcomes:
                outcome: dict[str, Any] | None = outcomes[event.command_id][0]
            else:
                with acting_as(record):
                    outcome = get_json(command_outcomes_table, event.command_id)
            outcomes[event.command_id] = (read_model.apply_to_outcome(outcome, event), record)
        async for command_id, (outcome, record) in taking_turns(outcomes.items()):
            with acting_as(record):
                put_json(command_outcomes_table, command_id, outcome)
        await outbox.flush()
        metrics.projected_total.labels("outcomes").inc(len(outcomes))
        yield len(outcomes)
