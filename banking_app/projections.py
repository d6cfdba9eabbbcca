"""The query side: projection agents that fold the ``events`` topic into read tables.

They read events only, never the command side's tables (CQRS), so the read model can be
dropped and rebuilt from the log. ``account-views`` and ``transactions`` are keyed by
account, as ``events`` is; ``command-outcomes`` is keyed by command id, so its agent
repartitions the events by command id first (Faust's ``group_by``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import faust

from banking_app import codec, metrics, read_model
from banking_app.app import app
from banking_app.domain import Event, event_from_dict
from banking_app.tables import get_json, new_table, put_json
from banking_app.topics import events_topic

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


def project_account(event: Event) -> bool:
    """Fold one event into its account's view and history; False when it changed nothing."""
    view = get_json(account_views_table, event.account_id)
    updated = read_model.apply_to_view(view, event)
    if updated is view or updated is None:
        return False
    item = read_model.history_item(event)
    if item is not None:
        # History first: once the view shows version n, lines 1..n are all readable.
        put_json(transactions_table, read_model.history_key(event.account_id, item["seq"]), item)
    put_json(account_views_table, event.account_id, updated)
    return True


def command_key(value: bytes) -> bytes:
    event = read_event(value)
    return codec.key(event.command_id if event else "")


@app.agent(events_topic)
async def project_accounts(stream: faust.StreamT[bytes]) -> AsyncIterator[bool]:
    async for value in stream:
        event = read_event(value)
        changed = event is not None and project_account(event)
        if changed:
            metrics.projected_total.labels("accounts").inc()
        yield changed


@app.agent(events_topic)
async def project_outcomes(stream: faust.StreamT[bytes]) -> AsyncIterator[str]:
    async for value in stream.group_by(command_key, name="by-command"):
        event = read_event(value)
        if event is None or not event.command_id:
            yield "skipped"
            continue
        outcome = read_model.apply_to_outcome(
            get_json(command_outcomes_table, event.command_id), event
        )
        put_json(command_outcomes_table, event.command_id, outcome)
        metrics.projected_total.labels("outcomes").inc()
        yield outcome["status"]
