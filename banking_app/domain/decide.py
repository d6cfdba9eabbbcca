"""``decide``: what a command means for an account, as events, plus the saga legs to send.

A transfer is a saga because its two accounts may live on different partitions:
the debit runs where the source lives and sends a ``CreditTransfer`` leg keyed by the
destination; the destination either credits (and sends ``SettleTransfer`` back) or
sends ``RefundTransfer`` back. Every step is a local, deterministic decision.

The invariants ``decide`` keeps, whatever it is sent (a forged leg included):

- an account's ``in_flight`` (money debited by its transfers, not yet settled or
  refunded) never goes below zero, nor below ``in_flight_count``, and is zero exactly
  when ``in_flight_count`` is;
- a refund or settlement never exceeds the account's ``in_flight``, so a refund pays
  back only money a debit took, and creates none;
- no balance goes below its overdraft limit: only a withdrawal or a transfer's debit
  lowers one, and both are checked (a credit or refund adds at least one minor unit);
- a withdrawal or transfer is refused with ``LIMIT_EXCEEDED`` past the account's
  daily limit (``banking_app.domain.limits``);
- the books balance: per currency, the balances plus the money in flight equal
  deposits minus withdrawals (``banking_app.domain.ledger`` checks it on the log).

A saga leg is the bank's own message, never a client's: it is not rejected with a
``CommandRejected``. A leg that cannot be the continuation of a real debit (see
``guards.require_in_flight``), or carries a field no leg ``decide`` sends could carry,
raises ``MalformedLeg`` and changes nothing; the event processor dead-letters it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from banking_app.domain import commands as cmd
from banking_app.domain import events as ev
from banking_app.domain import guards
from banking_app.domain.accounts import Account
from banking_app.domain.errors import CREDIT_REFUSALS, DomainError, MalformedLeg
from banking_app.domain.limits import Spending


@dataclass(frozen=True, slots=True)
class Decision:
    events: list[ev.Event] = field(default_factory=list)
    #: Saga legs to put on the commands topic, each keyed by its own ``account_id``.
    legs: list[cmd.Command] = field(default_factory=list)


def _next_seq(state: Account | None) -> int:
    return (state.version if state is not None else 0) + 1


def rejection(command: cmd.Command, error: DomainError, occurred_at: str) -> ev.CommandRejected:
    return ev.CommandRejected(
        event_id=ev.event_id_for(command.dedupe_id),
        command_id=command.command_id,
        account_id=command.account_id,
        occurred_at=occurred_at,
        seq=None,
        reason=error.reason.value,
        detail=error.detail,
        command_type=command.type,
        command=command.to_dict(),
    )


def decide(state: Account | None, command: cmd.Command, occurred_at: str) -> Decision:
    """Decide the outcome of ``command`` against ``state``; rejections are events too.

    Raises ``MalformedLeg`` (and returns nothing) for a saga leg that cannot belong to a
    real debit: a leg is never answered with a client-visible ``CommandRejected``.
    """
    try:
        return _decide(state, command, occurred_at)
    except MalformedLeg:
        raise
    except DomainError as error:
        if not command.public:
            # No guard a leg meets raises anything else; should one ever, a leg still
            # gets no rejection event under its transfer's command id.
            raise MalformedLeg(
                f"saga leg {command.type}: {error.detail}", command.command_id
            ) from error
        return Decision(events=[rejection(command, error, occurred_at)])


def _decide(state: Account | None, c: cmd.Command, at: str) -> Decision:
    common = {
        "event_id": ev.event_id_for(c.dedupe_id),
        "command_id": c.command_id,
        "account_id": c.account_id,
        "occurred_at": at,
        "seq": _next_seq(state),
    }
    if isinstance(c, cmd.CreateAccount):
        guards.require_absent(state)
        guards.require_version(state, c.expected_version)
        return Decision(
            [
                ev.AccountCreated(
                    **common,
                    owner=c.owner,
                    currency=c.currency,
                    overdraft_limit=c.overdraft_limit,
                    daily_withdrawal_limit=c.daily_withdrawal_limit,
                    daily_transfer_limit=c.daily_transfer_limit,
                )
            ]
        )
    if isinstance(c, cmd.CreditTransfer):
        return _credit(state, c, common)
    if isinstance(c, cmd.RefundTransfer | cmd.SettleTransfer):
        return _settle_or_refund(state, c, common)
    if isinstance(c, cmd.TransferMoney):
        guards.require_different_accounts(c.account_id, c.to_account_id)
    account = guards.require_exists(state, c.account_id)
    guards.require_open(account)
    guards.require_version(account, c.expected_version)
    if isinstance(c, cmd.CloseAccount):
        guards.require_settled_and_empty(account)
        return Decision([ev.AccountClosed(**common)])
    if isinstance(c, cmd.SetLimits):
        return Decision(
            [
                ev.LimitsSet(
                    **common,
                    daily_withdrawal_limit=c.daily_withdrawal_limit,
                    daily_transfer_limit=c.daily_transfer_limit,
                )
            ]
        )
    assert isinstance(c, cmd.Deposit | cmd.Withdraw | cmd.TransferMoney), c
    guards.require_valid_amount(c.amount)
    if isinstance(c, cmd.Deposit):
        guards.require_room_for(account, c.amount)
        balance = account.balance + c.amount
        return Decision(
            [
                ev.MoneyDeposited(
                    **common, amount=c.amount, balance=balance, currency=account.currency
                )
            ]
        )
    guards.require_funds(account, c.amount)
    kind = Spending.WITHDRAWAL if isinstance(c, cmd.Withdraw) else Spending.TRANSFER
    guards.require_within_limit(account, kind, c.amount, common["occurred_at"])
    balance = account.balance - c.amount
    if isinstance(c, cmd.Withdraw):
        return Decision(
            [
                ev.MoneyWithdrawn(
                    **common, amount=c.amount, balance=balance, currency=account.currency
                )
            ]
        )
    debited = ev.TransferDebited(
        **common,
        transfer_id=c.command_id,
        to_account_id=c.to_account_id,
        amount=c.amount,
        balance=balance,
        currency=account.currency,
    )
    credit = cmd.CreditTransfer(
        command_id=c.command_id,
        account_id=c.to_account_id,
        from_account_id=c.account_id,
        amount=c.amount,
        currency=account.currency,
    )
    return Decision([debited], [credit])


def _settle_or_refund(
    state: Account | None, c: cmd.RefundTransfer | cmd.SettleTransfer, common: dict
) -> Decision:
    """End a transfer on its source: the money in flight comes home, or is released.

    Only for a debit in flight (``guards.require_in_flight``): ``in_flight`` stays at
    least 0, and a refund pays back no more than debits took, so it creates no money.
    """
    guards.require_leg_amount(c)
    guards.require_leg_counterparty(c)
    if isinstance(c, cmd.RefundTransfer):
        guards.require_leg_reason(c)
    account = guards.require_in_flight(state, c)
    if isinstance(c, cmd.RefundTransfer):
        # Money coming home is never refused: the source cannot close while it is in flight.
        balance = account.balance + c.amount
        return Decision(
            [
                ev.TransferRefunded(
                    **common,
                    transfer_id=c.command_id,
                    to_account_id=c.to_account_id,
                    amount=c.amount,
                    balance=balance,
                    currency=account.currency,
                    reason=c.reason,
                )
            ]
        )
    settled = ev.TransferSettled(
        **{**common, "seq": None},
        transfer_id=c.command_id,
        to_account_id=c.to_account_id,
        amount=c.amount,
    )
    return Decision([settled])


def _credit(state: Account | None, c: cmd.CreditTransfer, common: dict) -> Decision:
    """Credit the destination, or send the money back with the reason it is refused.

    A credit cannot be checked against its debit (that lives on the source's partition),
    but its amount can: 1 to MAX_AMOUNT, so a credit never lowers a balance.
    """
    guards.require_leg_amount(c)
    guards.require_leg_counterparty(c)
    try:
        account = guards.require_exists(state, c.account_id)
        guards.require_open(account)
        guards.require_same_currency(account, c.currency)
        guards.require_room_for(account, c.amount)
    except CREDIT_REFUSALS as error:
        refund = cmd.RefundTransfer(
            command_id=c.command_id,
            account_id=c.from_account_id,
            to_account_id=c.account_id,
            amount=c.amount,
            reason=error.reason.value,
        )
        return Decision([], [refund])
    credited = ev.TransferCredited(
        **common,
        transfer_id=c.command_id,
        from_account_id=c.from_account_id,
        amount=c.amount,
        balance=account.balance + c.amount,
        currency=account.currency,
    )
    settle = cmd.SettleTransfer(
        command_id=c.command_id,
        account_id=c.from_account_id,
        to_account_id=c.account_id,
        amount=c.amount,
    )
    return Decision([credited], [settle])
