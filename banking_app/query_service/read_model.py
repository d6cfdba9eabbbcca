"""The query side's model, folded from events alone (never from the command side's tables).

Pure functions over plain dicts, so the projection agents stay thin and the fold can be
tested without Faust. Applying the same event twice changes nothing: seq-bearing events
are applied only when their seq is the next one, and the others are remembered by id.
"""

from __future__ import annotations

from typing import Any

from banking_app.domain import events as ev
from banking_app.domain.limits import LIMIT_NAMES


class SeqGap(Exception):
    """An event whose seq is past the next one: events before it never reached the view.

    Applying it would make the view skip money movements, so it is refused; the view
    stays at its last good version until ``rebuild-projections`` refolds the log.
    """

    def __init__(self, account_id: str, version: int, seq: int) -> None:
        super().__init__(f"account {account_id} is at version {version}, got seq {seq}")
        self.account_id, self.version, self.seq = account_id, version, seq


#: Seq-less events (TransferSettled) remembered per account to drop their redeliveries.
RECENT_UNSEQUENCED = 16

MONEY_FIELDS = ("amount", "balance")


def apply_to_view(view: dict[str, Any] | None, event: ev.Event) -> dict[str, Any] | None:
    """The account view after ``event``; ``view`` itself is returned when nothing changes.

    Raises ``SeqGap`` for an event that is not the next one of its account.
    """
    if isinstance(event, ev.CommandRejected):
        return view
    if isinstance(event, ev.AccountCreated):
        if view is not None:
            return view  # a redelivered AccountCreated
        return {
            "account_id": event.account_id,
            "owner": event.owner,
            "currency": event.currency,
            "balance": 0,
            "overdraft_limit": event.overdraft_limit,
            "daily_withdrawal_limit": event.daily_withdrawal_limit,
            "daily_transfer_limit": event.daily_transfer_limit,
            "in_flight": 0,
            "status": "OPEN",
            "version": event.seq,
            "created_at": event.occurred_at,
            "updated_at": event.occurred_at,
            "recent": [],
        }
    if view is None:
        return None  # an event for an account whose creation was never seen
    if event.seq is None:
        if event.event_id in view["recent"]:
            return view
        updated = {**view, "recent": [*view["recent"], event.event_id][-RECENT_UNSEQUENCED:]}
        if isinstance(event, ev.TransferSettled):
            updated["in_flight"] = view["in_flight"] - event.amount
        return updated
    if event.seq <= view["version"]:
        return view
    if event.seq > view["version"] + 1:
        raise SeqGap(event.account_id, view["version"], event.seq)
    updated = {**view, "version": event.seq, "updated_at": event.occurred_at}
    balance = getattr(event, "balance", None)
    if balance is not None:
        updated["balance"] = balance
    if isinstance(event, ev.TransferDebited):
        updated["in_flight"] = view["in_flight"] + event.amount
    elif isinstance(event, ev.TransferRefunded):
        updated["in_flight"] = view["in_flight"] - event.amount
    elif isinstance(event, ev.AccountClosed):
        updated["status"] = "CLOSED"
    elif isinstance(event, ev.LimitsSet):
        updated["daily_withdrawal_limit"] = event.daily_withdrawal_limit
        updated["daily_transfer_limit"] = event.daily_transfer_limit
    return updated


#: Fields of a view that a view written before they existed lacks, with their value.
ADDED_FIELDS = dict.fromkeys(LIMIT_NAMES)


def public_view(view: dict[str, Any]) -> dict[str, Any]:
    """The account as the API shows it (without the projection's bookkeeping)."""
    return {**ADDED_FIELDS, **{key: value for key, value in view.items() if key != "recent"}}


def history_item(event: ev.Event, view: dict[str, Any]) -> dict[str, Any] | None:
    """One line of an account's history, for every event that has a seq; ``view`` is the
    account after it (an event that moves no money, ``LimitsSet``, has no balance of its
    own)."""
    if event.seq is None:
        return None
    item: dict[str, Any] = {
        "seq": event.seq,
        "type": event.type,
        "amount": getattr(event, "amount", 0),
        "balance": view["balance"],
        "command_id": event.command_id,
        "occurred_at": event.occurred_at,
    }
    counterparty = getattr(event, "to_account_id", None) or getattr(event, "from_account_id", None)
    if counterparty:
        item["counterparty_account_id"] = counterparty
    reason = getattr(event, "reason", None)
    if reason:
        item["reason"] = reason
    return item


def history_key(account_id: str, seq: int) -> str:
    """Keys sort by seq, and one page is ``limit`` point lookups: O(page), not O(history)."""
    return f"{account_id}/{seq:012d}"


def apply_to_outcome(outcome: dict[str, Any] | None, event: ev.Event) -> dict[str, Any]:
    """A command's outcome after one more of its events (deduplicated by event id)."""
    outcome = outcome or {"command_id": event.command_id, "status": "pending", "events": []}
    if any(known["event_id"] == event.event_id for known in outcome["events"]):
        return outcome
    updated = {**outcome, "events": [*outcome["events"], event.to_dict()]}
    if isinstance(event, ev.CommandRejected | ev.TransferRefunded):
        # A refunded transfer moved no money: to its sender it failed, for this reason.
        updated["status"] = "rejected"
        updated["reason"] = event.reason
    elif event.type in ev.TERMINAL_TYPES:
        updated["status"] = "accepted"
    return updated
