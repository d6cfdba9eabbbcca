"""Invariants as small guard functions: each raises the ``DomainError`` that names the rule.

The ``require_leg_*`` guards and ``require_in_flight`` check a saga leg against what
``decide`` could have sent, and raise ``MalformedLeg``: the leg is not decided at all.
"""

from __future__ import annotations

from banking_app.domain import errors
from banking_app.domain.accounts import Account
from banking_app.domain.commands import MAX_AMOUNT, Leg, RefundTransfer, SettleTransfer
from banking_app.domain.limits import Spending, limit_of, spending_day, spent

#: Balances stay well inside a signed 64-bit integer, so any JSON reader can hold them.
MAX_BALANCE = 10**18


def require_exists(state: Account | None, account_id: str) -> Account:
    if state is None:
        raise errors.AccountNotFound(f"account {account_id!r} does not exist")
    return state


def require_absent(state: Account | None) -> None:
    if state is not None:
        raise errors.AccountAlreadyExists(f"account {state.account_id!r} already exists")


def require_open(state: Account) -> None:
    if not state.is_open:
        raise errors.AccountClosed(f"account {state.account_id!r} is closed")


def require_version(state: Account | None, expected: int | None) -> None:
    actual = state.version if state is not None else 0
    if expected is not None and expected != actual:
        raise errors.VersionConflict(f"expected version {expected}, account is at {actual}")


def require_valid_amount(amount: int) -> None:
    if not 1 <= amount <= MAX_AMOUNT:
        raise errors.InvalidAmount(f"amount must be from 1 to {MAX_AMOUNT} minor units")


def require_room_for(state: Account, amount: int) -> None:
    if state.balance + amount > MAX_BALANCE:
        raise errors.InvalidAmount(f"balance would exceed {MAX_BALANCE} minor units")


def require_funds(state: Account, amount: int) -> None:
    if state.balance - amount < -state.overdraft_limit:
        raise errors.InsufficientFunds(
            f"balance {state.balance} minus {amount} is below the overdraft limit "
            f"of {state.overdraft_limit}"
        )


def require_same_currency(state: Account, currency: str) -> None:
    if state.currency != currency:
        raise errors.CurrencyMismatch(
            f"account {state.account_id!r} holds {state.currency}, not {currency}"
        )


def require_within_limit(state: Account, kind: Spending, amount: int, occurred_at: str) -> None:
    """The day's total of ``kind``, with ``amount``, stays within the account's limit."""
    limit = limit_of(state, kind)
    if limit is None:
        return
    day = spending_day(state, occurred_at)
    so_far = spent(state, kind, day)
    if so_far + amount > limit:
        raise errors.LimitExceeded(
            f"{amount} would take the {day} total of {kind.name.lower()}s from {so_far} "
            f"past the daily limit of {limit}"
        )


def require_different_accounts(source: str, destination: str) -> None:
    if source == destination:
        raise errors.SameAccount("a transfer needs two different accounts")


def require_settled_and_empty(state: Account) -> None:
    if state.balance != 0 or state.in_flight_count != 0:
        raise errors.BalanceNotZero(
            f"balance is {state.balance} with {state.in_flight_count} transfer(s) in flight; "
            "an account closes only at zero with nothing in flight"
        )


# -- saga legs ----------------------------------------------------------------------


def _malformed_leg(leg: Leg, detail: str) -> errors.MalformedLeg:
    return errors.MalformedLeg(f"saga leg {leg.type}: {detail}", leg.command_id)


def require_leg_amount(leg: Leg) -> None:
    """A leg moves the amount of a debit that was accepted: an integer from 1 to MAX_AMOUNT.

    ``parse_command`` already refuses any other; this holds for legs built in code too.
    """
    amount = leg.amount
    if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
        raise _malformed_leg(
            leg, f"amount must be from 1 to {MAX_AMOUNT} minor units, not {amount!r}"
        )


def require_leg_counterparty(leg: Leg) -> None:
    """A transfer joins two different accounts, so a leg's counterparty is another one."""
    if getattr(leg, leg.counterparty_field) == leg.account_id:
        raise _malformed_leg(
            leg, f"its {leg.counterparty_field} {leg.account_id!r} is the account itself"
        )


def require_leg_reason(leg: RefundTransfer) -> None:
    """A refund says why its credit was refused, and a credit is refused only for these."""
    if not isinstance(leg.reason, str) or leg.reason not in errors.REFUND_REASONS:
        raise _malformed_leg(
            leg,
            f"reason {leg.reason!r} is not one a credit is refused for "
            f"({', '.join(sorted(errors.REFUND_REASONS))})",
        )


def require_in_flight(state: Account | None, leg: RefundTransfer | SettleTransfer) -> Account:
    """A refund or settlement ends a transfer whose debit of this account is in flight.

    The account's ``in_flight`` is the sum of the amounts of its ``in_flight_count``
    transfers debited and not yet settled or refunded, each at least one minor unit. So
    a real leg's amount leaves at least one unit for each other transfer in flight, and
    is all of ``in_flight`` when its transfer is the only one. Any other leg cannot be
    the continuation of a debit: refusing it keeps ``in_flight >= in_flight_count >= 0``
    (``in_flight`` zero exactly when nothing is in flight), and means a refund never
    pays back more than was debited, so it never creates money.
    """
    if state is None:
        raise _malformed_leg(
            leg, f"account {leg.account_id!r} does not exist, so no debit of it is in flight"
        )
    if state.in_flight_count < 1:
        raise _malformed_leg(leg, f"account {leg.account_id!r} has no transfer in flight")
    others = state.in_flight_count - 1
    if others == 0 and leg.amount != state.in_flight:
        raise _malformed_leg(
            leg,
            f"amount {leg.amount} is not the {state.in_flight} in flight from account "
            f"{leg.account_id!r} (its only transfer in flight)",
        )
    if state.in_flight - leg.amount < others:
        raise _malformed_leg(
            leg,
            f"amount {leg.amount} is more than a transfer in flight from account "
            f"{leg.account_id!r} can hold ({state.in_flight} in flight over "
            f"{state.in_flight_count} transfers)",
        )
    return state
