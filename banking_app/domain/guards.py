"""Invariants as small guard functions: each raises the ``DomainError`` that names the rule."""

from __future__ import annotations

from banking_app.domain import errors
from banking_app.domain.accounts import Account
from banking_app.domain.commands import MAX_AMOUNT

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


def require_different_accounts(source: str, destination: str) -> None:
    if source == destination:
        raise errors.SameAccount("a transfer needs two different accounts")


def require_settled_and_empty(state: Account) -> None:
    if state.balance != 0 or state.in_flight_count != 0:
        raise errors.BalanceNotZero(
            f"balance is {state.balance} with {state.in_flight_count} transfer(s) in flight; "
            "an account closes only at zero with nothing in flight"
        )
