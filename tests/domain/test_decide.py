"""``decide`` and ``evolve``, told as stories.

Each story starts from no account, sends commands one at a time, folds the events
with ``evolve`` and checks the whole state after every step, including that a
rejection leaves it exactly as it was. The transfer saga is driven by hand: the
legs ``decide`` asks to send are carried to the other account by the test.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from domain_stories import T0, T1, T2, T3, T4, T5, apply, folded, opening

from banking_app.domain import (
    Account,
    AccountStatus,
    CloseAccount,
    Command,
    CreateAccount,
    CreditTransfer,
    Deposit,
    MalformedLeg,
    Reason,
    RefundTransfer,
    SetLimits,
    SettleTransfer,
    TransferMoney,
    Withdraw,
    decide,
    event_from_dict,
    evolve,
    parse_command,
)
from banking_app.domain import events as ev
from banking_app.domain.commands import MAX_AMOUNT
from banking_app.domain.guards import MAX_BALANCE


def accepted(
    state: Account | None, command: Command, at: str
) -> tuple[ev.Event, Account, list[Command]]:
    """Decide a command that must succeed with one event; return it, the new state, the legs."""
    decision = decide(state, command, at)
    assert len(decision.events) == 1, decision
    (event,) = decision.events
    assert not isinstance(event, ev.CommandRejected), event
    assert event.command_id == command.command_id
    assert event.account_id == command.account_id
    assert event.occurred_at == at
    assert event.event_id == ev.event_id_for(command.dedupe_id)
    return event, folded(state, decision), decision.legs


def rejected(state: Account | None, command: Command, reason: Reason, at: str = T5) -> None:
    """Decide a command that must be refused for ``reason``, changing nothing."""
    decision = decide(state, command, at)
    assert decision.legs == []
    assert len(decision.events) == 1, decision
    (event,) = decision.events
    assert isinstance(event, ev.CommandRejected), event
    assert event.reason == reason.value
    assert event.detail  # says why, in words
    assert event.seq is None
    assert event.command_id == command.command_id
    assert event.account_id == command.account_id
    assert event.command_type == command.type
    assert event.command == command.to_dict()
    assert event.occurred_at == at
    assert event.event_id == ev.event_id_for(command.dedupe_id)
    # unchanged after a rejection
    assert evolve(state, event) == state
    assert apply(state, decision) == state


def open_account(
    account_id: str = "acc-a", currency: str = "EUR", overdraft_limit: int = 0, balance: int = 0
) -> Account:
    """An account created (and funded) through decide, at version 1 or 2."""
    create, *funding = opening(account_id, currency, overdraft_limit, balance)
    _, state, _ = accepted(None, create, T0)
    for deposit in funding:
        _, state, _ = accepted(state, deposit, T0)
    return state


# -- one account ----------------------------------------------------------------------


def test_an_account_is_created_funded_and_overdrawn_within_its_limit() -> None:
    # No account yet: anything but a create is ACCOUNT_NOT_FOUND.
    state = None
    rejected(
        state, Deposit(command_id="d0", account_id="acc-a", amount=10), Reason.ACCOUNT_NOT_FOUND
    )
    rejected(
        state, Withdraw(command_id="w0", account_id="acc-a", amount=10), Reason.ACCOUNT_NOT_FOUND
    )
    rejected(
        state,
        TransferMoney(command_id="t0", account_id="acc-a", to_account_id="acc-b", amount=10),
        Reason.ACCOUNT_NOT_FOUND,
    )
    rejected(state, CloseAccount(command_id="x0", account_id="acc-a"), Reason.ACCOUNT_NOT_FOUND)

    # Create.
    create = CreateAccount(
        command_id="c1", account_id="acc-a", owner="Alice", currency="EUR", overdraft_limit=500
    )
    event, state, legs = accepted(state, create, T1)
    assert event == ev.AccountCreated(
        event_id=ev.event_id_for("c1"),
        command_id="c1",
        account_id="acc-a",
        occurred_at=T1,
        seq=1,
        owner="Alice",
        currency="EUR",
        overdraft_limit=500,
    )
    assert legs == []
    assert state == Account(
        account_id="acc-a",
        owner="Alice",
        currency="EUR",
        overdraft_limit=500,
        balance=0,
        status=AccountStatus.OPEN,
        version=1,
        in_flight=0,
        in_flight_count=0,
        created_at=T1,
        updated_at=T1,
    )
    assert state.is_open

    # Creating it again is refused, whoever asks.
    rejected(state, create, Reason.ACCOUNT_ALREADY_EXISTS)
    rejected(
        state,
        replace(create, command_id="c1-again", owner="Mallory"),
        Reason.ACCOUNT_ALREADY_EXISTS,
    )

    # Deposit.
    event, state, legs = accepted(
        state, Deposit(command_id="d1", account_id="acc-a", amount=1000), T2
    )
    assert event == ev.MoneyDeposited(
        event_id=ev.event_id_for("d1"),
        command_id="d1",
        account_id="acc-a",
        occurred_at=T2,
        seq=2,
        amount=1000,
        balance=1000,
        currency="EUR",
    )
    assert legs == []
    assert (state.balance, state.version, state.updated_at, state.created_at) == (1000, 2, T2, T1)

    # Withdraw into the overdraft: 1000 - 1200 = -200, above -500.
    event, state, legs = accepted(
        state, Withdraw(command_id="w1", account_id="acc-a", amount=1200), T3
    )
    assert event == ev.MoneyWithdrawn(
        event_id=ev.event_id_for("w1"),
        command_id="w1",
        account_id="acc-a",
        occurred_at=T3,
        seq=3,
        amount=1200,
        balance=-200,
        currency="EUR",
    )
    assert legs == []
    assert (state.balance, state.version, state.updated_at) == (-200, 3, T3)

    # One cent beyond the overdraft is refused; the state is unchanged.
    rejected(
        state, Withdraw(command_id="w2", account_id="acc-a", amount=301), Reason.INSUFFICIENT_FUNDS
    )
    assert (state.balance, state.version) == (-200, 3)

    # Exactly down to the limit is allowed.
    event, state, _ = accepted(state, Withdraw(command_id="w3", account_id="acc-a", amount=300), T4)
    assert (event.seq, event.balance) == (4, -500)
    assert (state.balance, state.version, state.updated_at) == (-500, 4, T4)

    # At the limit, not one more cent.
    rejected(
        state, Withdraw(command_id="w4", account_id="acc-a", amount=1), Reason.INSUFFICIENT_FUNDS
    )
    assert (state.balance, state.version) == (-500, 4)


def test_an_account_without_overdraft_cannot_go_below_zero() -> None:
    state = open_account(balance=100)
    assert (state.balance, state.version, state.overdraft_limit) == (100, 2, 0)

    rejected(
        state, Withdraw(command_id="w1", account_id="acc-a", amount=101), Reason.INSUFFICIENT_FUNDS
    )
    rejected(
        state,
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=101),
        Reason.INSUFFICIENT_FUNDS,
    )
    assert (state.balance, state.version) == (100, 2)

    _, state, _ = accepted(state, Withdraw(command_id="w2", account_id="acc-a", amount=100), T1)
    assert (state.balance, state.version) == (0, 3)


@pytest.mark.parametrize("amount", [0, -5, -(2**63), MAX_AMOUNT + 1, 2**63 - 1])
def test_an_amount_outside_1_to_max_is_invalid(amount: int) -> None:
    state = open_account(overdraft_limit=10 * MAX_AMOUNT, balance=1000)
    assert (state.balance, state.version) == (1000, 2)

    rejected(
        state, Deposit(command_id="d", account_id="acc-a", amount=amount), Reason.INVALID_AMOUNT
    )
    rejected(
        state, Withdraw(command_id="w", account_id="acc-a", amount=amount), Reason.INVALID_AMOUNT
    )
    rejected(
        state,
        TransferMoney(command_id="t", account_id="acc-a", to_account_id="acc-b", amount=amount),
        Reason.INVALID_AMOUNT,
    )
    assert (state.balance, state.version, state.in_flight) == (1000, 2, 0)


def test_amounts_of_one_and_of_the_maximum_are_valid() -> None:
    state = open_account(overdraft_limit=MAX_AMOUNT)
    _, state, _ = accepted(state, Deposit(command_id="d1", account_id="acc-a", amount=1), T1)
    assert (state.balance, state.version) == (1, 2)
    _, state, _ = accepted(
        state, Deposit(command_id="d2", account_id="acc-a", amount=MAX_AMOUNT), T1
    )
    assert (state.balance, state.version) == (MAX_AMOUNT + 1, 3)
    _, state, _ = accepted(
        state, Withdraw(command_id="w1", account_id="acc-a", amount=MAX_AMOUNT), T1
    )
    assert (state.balance, state.version) == (1, 4)


def test_a_deposit_that_would_overflow_the_balance_is_invalid() -> None:
    state = replace(open_account(), balance=MAX_BALANCE - 5)
    rejected(state, Deposit(command_id="d1", account_id="acc-a", amount=6), Reason.INVALID_AMOUNT)
    assert (state.balance, state.version) == (MAX_BALANCE - 5, 1)

    _, state, _ = accepted(state, Deposit(command_id="d2", account_id="acc-a", amount=5), T1)
    assert (state.balance, state.version) == (MAX_BALANCE, 2)


def test_a_closed_account_refuses_everything() -> None:
    state = open_account(balance=50)
    assert (state.balance, state.version, state.status) == (50, 2, AccountStatus.OPEN)

    # Not while it holds money.
    close = CloseAccount(command_id="x1", account_id="acc-a")
    rejected(state, close, Reason.BALANCE_NOT_ZERO)
    assert (state.status, state.version) == (AccountStatus.OPEN, 2)

    _, state, _ = accepted(state, Withdraw(command_id="w1", account_id="acc-a", amount=50), T1)
    assert (state.balance, state.version) == (0, 3)

    event, state, legs = accepted(state, close, T2)
    assert event == ev.AccountClosed(
        event_id=ev.event_id_for("x1"), command_id="x1", account_id="acc-a", occurred_at=T2, seq=4
    )
    assert legs == []
    assert (state.status, state.balance, state.version, state.updated_at) == (
        AccountStatus.CLOSED,
        0,
        4,
        T2,
    )
    assert not state.is_open

    for command in [
        Deposit(command_id="d9", account_id="acc-a", amount=10),
        Withdraw(command_id="w9", account_id="acc-a", amount=10),
        TransferMoney(command_id="t9", account_id="acc-a", to_account_id="acc-b", amount=10),
        CloseAccount(command_id="x9", account_id="acc-a"),
    ]:
        rejected(state, command, Reason.ACCOUNT_CLOSED)
        assert (state.status, state.balance, state.version) == (AccountStatus.CLOSED, 0, 4)

    # A closed account still exists: it cannot be created again.
    rejected(
        state,
        CreateAccount(command_id="c9", account_id="acc-a", owner="Bob", currency="EUR"),
        Reason.ACCOUNT_ALREADY_EXISTS,
    )


def test_a_negative_balance_also_blocks_closing() -> None:
    state = open_account(overdraft_limit=100)
    _, state, _ = accepted(state, Withdraw(command_id="w1", account_id="acc-a", amount=1), T1)
    assert (state.balance, state.version) == (-1, 2)
    rejected(state, CloseAccount(command_id="x1", account_id="acc-a"), Reason.BALANCE_NOT_ZERO)
    assert (state.status, state.version) == (AccountStatus.OPEN, 2)


def test_an_expected_version_must_match_the_accounts_version() -> None:
    # Creating: an absent account is at version 0.
    create = CreateAccount(command_id="c1", account_id="acc-a", owner="A", currency="EUR")
    rejected(None, replace(create, expected_version=1), Reason.VERSION_CONFLICT)
    _, state, _ = accepted(None, replace(create, expected_version=0), T1)
    assert state.version == 1

    # Stale and future versions are both conflicts; the state is unchanged.
    deposit = Deposit(command_id="d1", account_id="acc-a", amount=10)
    rejected(state, replace(deposit, expected_version=0), Reason.VERSION_CONFLICT)
    rejected(state, replace(deposit, expected_version=2), Reason.VERSION_CONFLICT)
    assert (state.balance, state.version) == (0, 1)

    _, state, _ = accepted(state, replace(deposit, expected_version=1), T2)
    assert (state.balance, state.version) == (10, 2)

    # The version that was right a moment ago is now stale.
    withdraw = Withdraw(command_id="w1", account_id="acc-a", amount=10, expected_version=1)
    rejected(state, withdraw, Reason.VERSION_CONFLICT)
    transfer = TransferMoney(
        command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=5, expected_version=1
    )
    rejected(state, transfer, Reason.VERSION_CONFLICT)
    rejected(
        state,
        CloseAccount(command_id="x1", account_id="acc-a", expected_version=1),
        Reason.VERSION_CONFLICT,
    )
    assert (state.balance, state.version) == (10, 2)

    _, state, _ = accepted(state, replace(withdraw, expected_version=2), T3)
    assert (state.balance, state.version) == (0, 3)
    _, state, _ = accepted(
        state, CloseAccount(command_id="x2", account_id="acc-a", expected_version=3), T4
    )
    assert (state.status, state.version) == (AccountStatus.CLOSED, 4)


def test_a_transfer_to_the_same_account_is_refused() -> None:
    state = open_account(balance=100)
    rejected(
        state,
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-a", amount=10),
        Reason.SAME_ACCOUNT,
    )
    assert (state.balance, state.version, state.in_flight, state.in_flight_count) == (100, 2, 0, 0)


def test_a_rejection_of_a_missing_account_leaves_no_account() -> None:
    decision = decide(None, Deposit(command_id="d1", account_id="acc-z", amount=1), T1)
    assert [e.type for e in decision.events] == ["CommandRejected"]
    assert apply(None, decision) is None


# -- the transfer saga ----------------------------------------------------------------


def test_a_transfer_debits_credits_and_settles() -> None:
    source = open_account("acc-a", balance=1000)
    destination = open_account("acc-b", balance=10)
    assert (source.balance, source.version, source.in_flight, source.in_flight_count) == (
        1000,
        2,
        0,
        0,
    )
    assert (destination.balance, destination.version) == (10, 2)

    # 1. On the source: debit, and send the credit leg to the destination.
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=300)
    debited, source, legs = accepted(source, transfer, T1)
    assert debited == ev.TransferDebited(
        event_id=ev.event_id_for("t1"),
        command_id="t1",
        account_id="acc-a",
        occurred_at=T1,
        seq=3,
        transfer_id="t1",
        to_account_id="acc-b",
        amount=300,
        balance=700,
        currency="EUR",
    )
    assert legs == [
        CreditTransfer(
            command_id="t1", account_id="acc-b", from_account_id="acc-a", amount=300, currency="EUR"
        )
    ]
    assert (source.balance, source.version, source.in_flight, source.in_flight_count) == (
        700,
        3,
        300,
        1,
    )
    assert source.updated_at == T1
    (credit,) = legs

    # The money in flight is spoken for: the source cannot close, nor spend it twice.
    rejected(
        source, Withdraw(command_id="w1", account_id="acc-a", amount=701), Reason.INSUFFICIENT_FUNDS
    )
    assert (source.balance, source.in_flight) == (700, 300)

    # 2. On the destination: credit, and send the settle leg back to the source.
    credited, destination, legs = accepted(destination, credit, T2)
    assert credited == ev.TransferCredited(
        event_id=ev.event_id_for("t1/credit"),
        command_id="t1",
        account_id="acc-b",
        occurred_at=T2,
        seq=3,
        transfer_id="t1",
        from_account_id="acc-a",
        amount=300,
        balance=310,
        currency="EUR",
    )
    assert legs == [
        SettleTransfer(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=300)
    ]
    assert (destination.balance, destination.version, destination.in_flight) == (310, 3, 0)
    # the source is untouched by the credit
    assert (source.balance, source.version, source.in_flight, source.in_flight_count) == (
        700,
        3,
        300,
        1,
    )
    (settle,) = legs

    # 3. Back on the source: settled. No seq, no new version, nothing left in flight.
    decision = decide(source, settle, T3)
    assert decision.legs == []
    assert decision.events == [
        ev.TransferSettled(
            event_id=ev.event_id_for("t1/settle"),
            command_id="t1",
            account_id="acc-a",
            occurred_at=T3,
            seq=None,
            transfer_id="t1",
            to_account_id="acc-b",
            amount=300,
        )
    ]
    settled_source = apply(source, decision)
    assert settled_source == replace(source, in_flight=0, in_flight_count=0)
    assert (settled_source.balance, settled_source.version, settled_source.updated_at) == (
        700,
        3,
        T1,
    )
    source = settled_source

    # Now the source could close once empty; the next event takes seq 4.
    _, source, _ = accepted(source, Withdraw(command_id="w2", account_id="acc-a", amount=700), T4)
    assert (source.balance, source.version) == (0, 4)
    event, source, _ = accepted(source, CloseAccount(command_id="x1", account_id="acc-a"), T5)
    assert (event.seq, source.status, source.version) == (5, AccountStatus.CLOSED, 5)


def test_the_credit_leg_carries_the_sources_currency() -> None:
    source = open_account("acc-a", currency="USD", balance=80)
    destination = open_account("acc-b", currency="USD")
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=30)
    debited, source, (credit,) = accepted(source, transfer, T1)
    assert (debited.currency, credit.currency) == ("USD", "USD")
    assert (source.balance, source.in_flight) == (50, 30)

    credited, destination, _ = accepted(destination, credit, T2)
    assert (credited.currency, credited.balance) == ("USD", 30)
    assert (destination.balance, destination.version) == (30, 2)

    # The same leg into a EUR account is refused for its currency.
    decision = decide(open_account("acc-b", currency="EUR"), credit, T2)
    assert decision.events == []
    assert [leg.reason for leg in decision.legs] == ["CURRENCY_MISMATCH"]


def test_a_zero_balance_with_a_transfer_in_flight_cannot_close() -> None:
    source = open_account("acc-a", balance=100)
    destination = open_account("acc-b")

    _, source, (credit,) = accepted(
        source,
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=100),
        T1,
    )
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        0,
        100,
        1,
        3,
    )

    close = CloseAccount(command_id="x1", account_id="acc-a")
    rejected(source, close, Reason.BALANCE_NOT_ZERO)
    assert (source.status, source.version) == (AccountStatus.OPEN, 3)

    # Credited on the other side, but not yet settled here: still in flight.
    _, destination, (settle,) = accepted(destination, credit, T2)
    assert destination.balance == 100
    rejected(source, close, Reason.BALANCE_NOT_ZERO)
    assert (source.status, source.version, source.in_flight_count) == (AccountStatus.OPEN, 3, 1)

    source = apply(source, decide(source, settle, T3))
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        0,
        0,
        0,
        3,
    )
    _, source, _ = accepted(source, close, T4)
    assert (source.status, source.version) == (AccountStatus.CLOSED, 4)


def test_two_transfers_in_flight_are_counted_apart() -> None:
    source = open_account("acc-a", balance=100)
    _, source, (_credit1,) = accepted(
        source,
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=30),
        T1,
    )
    _, source, (_credit2,) = accepted(
        source,
        TransferMoney(command_id="t2", account_id="acc-a", to_account_id="acc-c", amount=70),
        T2,
    )
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        0,
        100,
        2,
        4,
    )

    source = apply(
        source,
        decide(
            source,
            SettleTransfer(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=30),
            T3,
        ),
    )
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        0,
        70,
        1,
        4,
    )
    rejected(source, CloseAccount(command_id="x1", account_id="acc-a"), Reason.BALANCE_NOT_ZERO)

    _, source, _ = accepted(
        source,
        RefundTransfer(
            command_id="t2",
            account_id="acc-a",
            to_account_id="acc-c",
            amount=70,
            reason="ACCOUNT_NOT_FOUND",
        ),
        T4,
    )
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        70,
        0,
        0,
        5,
    )


def destination_closed() -> Account:
    state = open_account("acc-b", balance=0)
    _, state, _ = accepted(state, CloseAccount(command_id="close-b", account_id="acc-b"), T0)
    assert state.status is AccountStatus.CLOSED
    return state


FAILED_CREDITS = [
    pytest.param(lambda: None, Reason.ACCOUNT_NOT_FOUND, id="missing-destination"),
    pytest.param(destination_closed, Reason.ACCOUNT_CLOSED, id="closed-destination"),
    pytest.param(
        lambda: open_account("acc-b", currency="USD", balance=5),
        Reason.CURRENCY_MISMATCH,
        id="other-currency",
    ),
    pytest.param(
        lambda: replace(open_account("acc-b"), balance=MAX_BALANCE - 299),
        Reason.INVALID_AMOUNT,
        id="destination-would-overflow",
    ),
]


@pytest.mark.parametrize(("make_destination", "reason"), FAILED_CREDITS)
def test_a_failed_credit_is_refunded_to_the_source(make_destination: Any, reason: Reason) -> None:
    source = open_account("acc-a", overdraft_limit=1000, balance=200)
    destination = make_destination()
    destination_before = destination
    assert (source.balance, source.version) == (200, 2)

    # 1. Debited on the source, whatever the destination's state: it lives elsewhere.
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=300)
    _, source, (credit,) = accepted(source, transfer, T1)
    assert (source.balance, source.version, source.in_flight, source.in_flight_count) == (
        -100,
        3,
        300,
        1,
    )

    # 2. The destination cannot take it: no event there, a refund leg back to the source.
    decision = decide(destination, credit, T2)
    assert decision.events == []
    assert decision.legs == [
        RefundTransfer(
            command_id="t1",
            account_id="acc-a",
            to_account_id="acc-b",
            amount=300,
            reason=reason.value,
        )
    ]
    assert apply(destination, decision) == destination_before
    (refund,) = decision.legs
    assert parse_command(refund.to_dict()) == refund
    assert refund.dedupe_id == "t1/refund"

    # 3. The source gets its money back, with the reason, as its next version.
    refunded, source, legs = accepted(source, refund, T3)
    assert refunded == ev.TransferRefunded(
        event_id=ev.event_id_for("t1/refund"),
        command_id="t1",
        account_id="acc-a",
        occurred_at=T3,
        seq=4,
        transfer_id="t1",
        to_account_id="acc-b",
        amount=300,
        balance=200,
        currency="EUR",
        reason=reason.value,
    )
    assert legs == []
    assert (source.balance, source.version, source.in_flight, source.in_flight_count) == (
        200,
        4,
        0,
        0,
    )
    assert source.updated_at == T3


def test_a_refund_is_never_refused_even_beyond_the_overdraft() -> None:
    # Money coming home is accepted even if the account has since moved to its limit.
    source = open_account("acc-a", overdraft_limit=0, balance=100)
    _, source, _ = accepted(
        source,
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=100),
        T1,
    )
    assert (source.balance, source.in_flight) == (0, 100)
    refund = RefundTransfer(
        command_id="t1",
        account_id="acc-a",
        to_account_id="acc-b",
        amount=100,
        reason="ACCOUNT_CLOSED",
    )
    _, source, _ = accepted(source, refund, T2)
    assert (source.balance, source.in_flight, source.in_flight_count, source.version) == (
        100,
        0,
        0,
        4,
    )


def test_a_credit_into_an_overdrawn_destination_in_the_same_currency_is_accepted() -> None:
    destination = open_account("acc-b", overdraft_limit=500)
    _, destination, _ = accepted(
        destination, Withdraw(command_id="w", account_id="acc-b", amount=400), T1
    )
    assert destination.balance == -400
    credit = CreditTransfer(
        command_id="t1", account_id="acc-b", from_account_id="acc-a", amount=100, currency="EUR"
    )
    credited, destination, (settle,) = accepted(destination, credit, T2)
    assert (credited.balance, credited.seq) == (-300, 3)
    assert (destination.balance, destination.version) == (-300, 3)
    assert settle == SettleTransfer(
        command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=100
    )


# -- determinism and sequence ---------------------------------------------------------


def test_the_same_command_against_the_same_state_gives_identical_events() -> None:
    source = open_account("acc-a", balance=500)
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=50)
    first, second = decide(source, transfer, T1), decide(source, transfer, T1)
    assert first == second
    assert [e.to_dict() for e in first.events] == [e.to_dict() for e in second.events]

    # The event id depends on the command and the leg only, not on the time or the state.
    later = decide(replace(source, balance=400, version=9), transfer, T4)
    assert later.events[0].event_id == first.events[0].event_id == ev.event_id_for("t1")
    assert later.events[0] != first.events[0]

    # ...and differs for another command id.
    other = decide(source, replace(transfer, command_id="t2"), T1)
    assert other.events[0].event_id != first.events[0].event_id


def test_every_leg_of_a_transfer_has_its_own_event_id() -> None:
    source = open_account("acc-a", balance=500)
    destination = open_account("acc-b")
    missing = None
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=50)
    debited, source, (credit,) = accepted(source, transfer, T1)
    credited, _, (settle,) = accepted(destination, credit, T2)
    (settled,) = decide(source, settle, T3).events
    (refund,) = decide(missing, replace(credit, account_id="acc-z"), T2).legs
    refunded, _, _ = accepted(source, refund, T3)

    ids = [debited.event_id, credited.event_id, settled.event_id, refunded.event_id]
    assert len(set(ids)) == 4
    assert ids == [ev.event_id_for(x) for x in ("t1", "t1/credit", "t1/settle", "t1/refund")]
    # a leg is never rejected with an event (which would share the id of the leg's one
    # outcome): one that cannot end a debit in flight is not decided at all
    with pytest.raises(MalformedLeg):
        decide(None, settle, T3)
    # all the legs belong to the one command
    assert {debited.command_id, credited.command_id, settled.command_id, refunded.command_id} == {
        "t1"
    }


def test_seq_goes_up_by_one_per_state_changing_event_only() -> None:
    state = None
    seqs: list[int | None] = []
    script: list[Command] = [
        CreateAccount(command_id="c", account_id="acc-a", owner="A", currency="EUR"),
        Deposit(command_id="d1", account_id="acc-a", amount=100),
        Withdraw(command_id="w-too-much", account_id="acc-a", amount=1000),  # rejected
        TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=10),
        SettleTransfer(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=10),
        Deposit(command_id="d-zero", account_id="acc-a", amount=0),  # rejected
        TransferMoney(command_id="t2", account_id="acc-a", to_account_id="acc-b", amount=20),
        RefundTransfer(
            command_id="t2",
            account_id="acc-a",
            to_account_id="acc-b",
            amount=20,
            reason="ACCOUNT_CLOSED",
        ),
        Withdraw(command_id="w1", account_id="acc-a", amount=90),
        CloseAccount(command_id="x", account_id="acc-a"),
        Deposit(command_id="d-closed", account_id="acc-a", amount=5),  # rejected
    ]
    versions = []
    for command in script:
        (event,) = decide(state, command, T1).events
        state = evolve(state, event)
        seqs.append(event.seq)
        versions.append(state.version)
    assert seqs == [1, 2, None, 3, None, None, 4, 5, 6, 7, None]
    assert versions == [1, 2, 2, 3, 3, 3, 4, 5, 6, 7, 7]
    assert (state.balance, state.in_flight, state.status) == (0, 0, AccountStatus.CLOSED)


# -- the wire form of events ----------------------------------------------------------


def one_of_every_event() -> list[ev.Event]:
    source = open_account("acc-a", overdraft_limit=100, balance=500)
    destination = open_account("acc-b")
    events: list[ev.Event] = []

    def run(state: Account | None, command: Command) -> tuple[Account | None, list[Command]]:
        decision = decide(state, command, T1)
        events.extend(decision.events)
        return apply(state, decision), decision.legs

    _, _ = run(
        None,
        CreateAccount(
            command_id="c", account_id="acc-c", owner="Ç", currency="CHF", overdraft_limit=7
        ),
    )
    source, _ = run(source, Deposit(command_id="d", account_id="acc-a", amount=5))
    source, _ = run(source, Withdraw(command_id="w", account_id="acc-a", amount=5))
    source, (credit,) = run(
        source, TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=5)
    )
    destination, (settle,) = run(destination, credit)
    source, _ = run(source, settle)
    # A refund only ends a debit in flight: a transfer to an account that does not exist.
    source, (to_nowhere,) = run(
        source, TransferMoney(command_id="t2", account_id="acc-a", to_account_id="acc-z", amount=9)
    )
    _, (refund,) = run(None, to_nowhere)
    source, _ = run(source, refund)
    _, _ = run(destination, CloseAccount(command_id="x", account_id="acc-b", expected_version=0))
    _, _ = run(open_account("acc-e"), CloseAccount(command_id="x2", account_id="acc-e"))
    _, _ = run(
        open_account("acc-f"),
        SetLimits(command_id="l", account_id="acc-f", daily_withdrawal_limit=50),
    )
    return events


@pytest.mark.parametrize("event", one_of_every_event(), ids=lambda e: e.type)
def test_an_event_reads_back_from_its_dict(event: ev.Event) -> None:
    data = event.to_dict()
    assert data["type"] == event.type
    assert data["schema_version"] == ev.SCHEMA_VERSION == 2
    assert ("seq" in data) == (event.seq is not None)
    again = event_from_dict(data)
    assert again == event
    assert type(again) is type(event)
    assert again.to_dict() == data


def test_the_round_trip_covers_every_event_type() -> None:
    assert {e.type for e in one_of_every_event()} == set(ev.EVENT_TYPES)


def test_a_v1_deposit_is_upcast() -> None:
    v1 = {
        "type": "MoneyDeposited",
        "event_id": "e-1",
        "command_id": "d1",
        "account_id": "acc-a",
        "seq": 2,
        "amount": 100,
        "balance": 150,
    }
    before = dict(v1)
    event = event_from_dict(v1)
    assert event == ev.MoneyDeposited(
        event_id="e-1",
        command_id="d1",
        account_id="acc-a",
        occurred_at="1970-01-01T00:00:00.000Z",
        seq=2,
        amount=100,
        balance=150,
        currency="",
    )
    assert v1 == before  # the input is not modified
    assert event.to_dict()["schema_version"] == 2
    # ...and its state still folds
    state = evolve(open_account("acc-a", balance=50), event)
    assert (state.balance, state.version) == (150, 2)


def test_a_v1_event_keeps_what_it_did_record() -> None:
    v1 = {
        "type": "MoneyWithdrawn",
        "schema_version": 1,
        "event_id": "e-2",
        "command_id": "w1",
        "account_id": "acc-a",
        "occurred_at": "2020-01-01T00:00:00.000Z",
        "seq": 3,
        "amount": 1,
        "balance": 0,
        "currency": "EUR",
    }
    event = event_from_dict(v1)
    assert (event.occurred_at, event.currency) == ("2020-01-01T00:00:00.000Z", "EUR")
    # A v1 event that never had a currency gets no currency field.
    closed = event_from_dict(
        {
            "type": "AccountClosed",
            "event_id": "e-3",
            "command_id": "x",
            "account_id": "acc-a",
            "seq": 4,
        }
    )
    assert closed == ev.AccountClosed(
        event_id="e-3",
        command_id="x",
        account_id="acc-a",
        occurred_at="1970-01-01T00:00:00.000Z",
        seq=4,
    )


def test_an_unknown_event_type_is_not_read() -> None:
    with pytest.raises(KeyError):
        event_from_dict({"type": "MoneyPrinted", "schema_version": 2, "event_id": "e"})
