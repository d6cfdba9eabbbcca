"""Daily spending limits: how much an account may withdraw, and send by transfer, per day.

A limit is a number of minor units per UTC day, or ``None``: no limit (the default). It
is set when the account is opened or by ``SET_LIMITS``, and ``decide`` enforces it: a
withdrawal or transfer that would take the day's total past the limit is refused with
``LIMIT_EXCEEDED``. Exactly the limit is allowed.

The day is the UTC date of the command's own timestamp (its ``occurred_at``), so a
replay decides every command as it was decided, whatever the clock says now. An account
keeps the totals of one day only, the latest it has spent on: the day never goes back.
A command stamped with an earlier day (a producer's clock behind another's) counts
against the latest day's totals; so no choice of timestamps lets more through in a day
than its limit, only possibly less.

What counts is what left the account that day: a withdrawal, and a transfer's debit. A
refunded transfer is not given back to the day's total: the money came home, but the
day's allowance was used when it left. A redelivered command is never decided twice,
so it counts once.

The invariant (``tests/domain/test_limits.py``, with hypothesis): whatever the order and
stamps of an account's commands, the money counted against each day, per kind, never
exceeds the limit in force when the last of it was decided; and an account with no limit
is decided exactly as if limits did not exist.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from banking_app.domain.accounts import Account


class Spending(StrEnum):
    """What a daily limit applies to: the account's field of that day's total."""

    WITHDRAWAL = "withdrawn_today"
    TRANSFER = "transferred_today"


#: The account field holding each kind's limit.
LIMIT_FIELDS = {
    Spending.WITHDRAWAL: "daily_withdrawal_limit",
    Spending.TRANSFER: "daily_transfer_limit",
}
#: The limits' field names, as commands, events, accounts and views all spell them.
LIMIT_NAMES = tuple(LIMIT_FIELDS.values())


def day_of(occurred_at: str) -> str:
    """The UTC day, ``YYYY-MM-DD``, of an ISO timestamp (``occurred_at``); ordered as
    text, since years are written with four digits."""
    return occurred_at[:10]


def spending_day(account: Account, occurred_at: str) -> str:
    """The day a command stamped ``occurred_at`` counts against: its own, unless the
    account has already spent on a later one."""
    return max(day_of(occurred_at), account.spending_day)


def spent(account: Account, kind: Spending, day: str) -> int:
    """What the account has spent of ``kind`` on ``day``."""
    return getattr(account, kind.value) if account.spending_day == day else 0


def limit_of(account: Account, kind: Spending) -> int | None:
    return getattr(account, LIMIT_FIELDS[kind])  # type: ignore[no-any-return]


def after_spending(
    account: Account, kind: Spending, amount: int, occurred_at: str
) -> dict[str, Any]:
    """The account's changed fields once it has spent ``amount`` of ``kind``."""
    day = spending_day(account, occurred_at)
    changes: dict[str, Any] = {"spending_day": day}
    for other in Spending:
        changes[other.value] = spent(account, other, day)
    changes[kind.value] += amount
    return changes
