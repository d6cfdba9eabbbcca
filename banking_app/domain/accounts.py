"""The account aggregate: its state, and ``evolve``, the only way that state changes."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any

from banking_app.domain import events as ev
from banking_app.domain.limits import Spending, after_spending


class AccountStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    owner: str
    currency: str
    overdraft_limit: int
    balance: int = 0
    status: AccountStatus = AccountStatus.OPEN
    #: The seq of the last event applied; 0 before the account exists.
    version: int = 0
    #: Money debited by transfers whose credit leg has not yet been settled or refunded.
    in_flight: int = 0
    in_flight_count: int = 0
    created_at: str = ""
    updated_at: str = ""
    #: Daily limits in minor units, ``None`` for none (``banking_app.domain.limits``).
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None
    #: The latest UTC day the account spent on, and what it spent of each kind that day.
    spending_day: str = ""
    withdrawn_today: int = 0
    transferred_today: int = 0

    @property
    def is_open(self) -> bool:
        return self.status is AccountStatus.OPEN

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field (the status enum included),
        # which showed in the worker's profile; every field here is immutable.
        return {name: getattr(self, name) for name in _ACCOUNT_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(**{**data, "status": AccountStatus(data["status"])})


_ACCOUNT_FIELDS = tuple(f.name for f in fields(Account))


def evolve(state: Account | None, event: ev.Event) -> Account | None:
    """Apply one event to an account's state. Pure: the same inputs give the same state."""
    if isinstance(event, ev.AccountCreated):
        return Account(
            account_id=event.account_id,
            owner=event.owner,
            currency=event.currency,
            overdraft_limit=event.overdraft_limit,
            daily_withdrawal_limit=event.daily_withdrawal_limit,
            daily_transfer_limit=event.daily_transfer_limit,
            version=event.seq or 0,
            created_at=event.occurred_at,
            updated_at=event.occurred_at,
        )
    if state is None or isinstance(event, ev.CommandRejected):
        return state
    changes: dict[str, Any] = {}
    if event.seq is not None:
        changes = {"version": event.seq, "updated_at": event.occurred_at}
    if isinstance(
        event,
        ev.MoneyDeposited | ev.MoneyWithdrawn | ev.TransferDebited | ev.TransferCredited,
    ):
        changes["balance"] = event.balance
    if isinstance(event, ev.MoneyWithdrawn):
        changes.update(after_spending(state, Spending.WITHDRAWAL, event.amount, event.occurred_at))
    elif isinstance(event, ev.TransferDebited):
        changes["in_flight"] = state.in_flight + event.amount
        changes["in_flight_count"] = state.in_flight_count + 1
        changes.update(after_spending(state, Spending.TRANSFER, event.amount, event.occurred_at))
    elif isinstance(event, ev.TransferRefunded | ev.TransferSettled):
        changes["in_flight"] = state.in_flight - event.amount
        changes["in_flight_count"] = state.in_flight_count - 1
        if isinstance(event, ev.TransferRefunded):
            changes["balance"] = event.balance
    elif isinstance(event, ev.AccountClosed):
        changes["status"] = AccountStatus.CLOSED
    elif isinstance(event, ev.LimitsSet):
        changes["daily_withdrawal_limit"] = event.daily_withdrawal_limit
        changes["daily_transfer_limit"] = event.daily_transfer_limit
    return replace(state, **changes)
