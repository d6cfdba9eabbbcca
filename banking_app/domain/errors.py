"""The closed set of reasons a command can be refused for, and the errors that carry them.

Guards in ``banking_app.domain.guards`` raise these; ``decide`` turns them into a
``CommandRejected`` event, so a rejection is data, never a crash. The one exception is
``MalformedLeg``: a saga leg the bank cannot have sent is not decided at all, and
``decide`` raises it (see its docstring).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    ACCOUNT_ALREADY_EXISTS = "ACCOUNT_ALREADY_EXISTS"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    SAME_ACCOUNT = "SAME_ACCOUNT"
    BALANCE_NOT_ZERO = "BALANCE_NOT_ZERO"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    MALFORMED_COMMAND = "MALFORMED_COMMAND"
    #: The command id was first used for another command: another account, type or
    #: amount (``banking_app.domain.command_ids``). The first use stands.
    COMMAND_ID_REUSED = "COMMAND_ID_REUSED"
    #: A withdrawal or transfer past the account's daily limit (``domain.limits``).
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


class DomainError(Exception):
    """A command that is well formed but not allowed against the account's state."""

    reason: Reason

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason.value)
        self.detail = detail or self.reason.value


class AccountAlreadyExists(DomainError):
    reason = Reason.ACCOUNT_ALREADY_EXISTS


class AccountNotFound(DomainError):
    reason = Reason.ACCOUNT_NOT_FOUND


class AccountClosed(DomainError):
    reason = Reason.ACCOUNT_CLOSED


class InsufficientFunds(DomainError):
    reason = Reason.INSUFFICIENT_FUNDS


class InvalidAmount(DomainError):
    reason = Reason.INVALID_AMOUNT


class CurrencyMismatch(DomainError):
    reason = Reason.CURRENCY_MISMATCH


class SameAccount(DomainError):
    reason = Reason.SAME_ACCOUNT


class BalanceNotZero(DomainError):
    reason = Reason.BALANCE_NOT_ZERO


class VersionConflict(DomainError):
    reason = Reason.VERSION_CONFLICT


class LimitExceeded(DomainError):
    reason = Reason.LIMIT_EXCEEDED


class MalformedCommand(DomainError):
    """The input could not be read as a command at all.

    ``command_id`` is set when one could still be read from the input, so the sender
    can be told about the rejection under the id it chose.
    """

    reason = Reason.MALFORMED_COMMAND

    def __init__(self, detail: str, command_id: str | None = None) -> None:
        super().__init__(detail)
        self.command_id = command_id


class MalformedLeg(MalformedCommand):
    """A saga leg (``TRANSFER_CREDIT``, ``TRANSFER_REFUND``, ``TRANSFER_SETTLE``) that the
    bank cannot have sent: a field out of what ``decide`` ever puts in a leg, or a refund
    or settlement with no debit in flight behind it.

    ``parse_command`` raises it for a malformed leg, and ``decide`` for a leg that cannot
    be the continuation of a real debit. A leg is the bank's own message, so this is
    never a client-visible rejection: the input is dead-lettered, no event is emitted
    (not even a ``CommandRejected``: the leg's command id is a transfer's, which has or
    will have its own outcome), and the account is left exactly as it was.
    ``command_id`` is the leg's, when it could be read.
    """


#: What a credit leg can be refused for (``decide`` then sends a refund leg carrying the
#: reason). ``decide`` catches exactly these while crediting; anything else is no refusal.
CREDIT_REFUSALS: tuple[type[DomainError], ...] = (
    AccountNotFound,
    AccountClosed,
    CurrencyMismatch,
    InvalidAmount,
)
#: The only reasons a ``TRANSFER_REFUND`` leg can carry.
REFUND_REASONS: frozenset[str] = frozenset(cls.reason.value for cls in CREDIT_REFUSALS)
