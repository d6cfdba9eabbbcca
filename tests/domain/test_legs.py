"""Forged saga legs, told as stories.

Anything that can write the ``commands`` topic can send a ``TRANSFER_CREDIT``,
``TRANSFER_REFUND`` or ``TRANSFER_SETTLE``. Legs are authenticated in the event
processor; the domain is the second line: ``parse_command`` reads a leg as strictly as
``decide`` writes one, and ``decide`` refuses a refund or settlement that no debit in
flight can be behind. Either way the refusal is ``MalformedLeg`` (never a
``CommandRejected``: a leg is the bank's own message), and each story checks the state
after every step: a refused leg moves nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from domain_stories import T0, T1, T2, T3, folded, opening

from banking_app.domain import (
    Account,
    AccountStatus,
    CloseAccount,
    Command,
    CreditTransfer,
    Decision,
    MalformedCommand,
    MalformedLeg,
    Reason,
    RefundTransfer,
    TransferMoney,
    decide,
    evolve,
    parse_command,
)
from banking_app.domain import events as ev
from banking_app.domain.commands import MAX_AMOUNT
from banking_app.domain.errors import REFUND_REASONS
from banking_app.domain.guards import MAX_BALANCE

# -- helpers --------------------------------------------------------------------------


def step(state: Account | None, command: Command, at: str = T1) -> tuple[Account, Decision]:
    """Decide a command that is decided (not refused as malformed), and fold its events."""
    decision = decide(state, command, at)
    return folded(state, decision), decision


def open_account(
    account_id: str, balance: int = 0, currency: str = "EUR", overdraft_limit: int = 0
) -> Account:
    create, *funding = opening(account_id, currency, overdraft_limit, balance)
    state, _ = step(None, create, T0)
    for deposit in funding:
        state, _ = step(state, deposit, T0)
    assert (state.balance, state.in_flight, state.in_flight_count) == (balance, 0, 0)
    return state


def send_transfer(source: Account, command_id: str, to: str, amount: int) -> Account:
    """Debit a transfer from ``source``: its money is then in flight."""
    after, decision = step(source, TransferMoney(command_id, source.account_id, None, to, amount))
    assert [e.type for e in decision.events] == ["TransferDebited"]
    return after


def refused_by_decide(state: Account | None, leg: Command) -> MalformedLeg:
    """``decide`` refuses the leg: it raises, so no event is emitted and nothing moves."""
    before = replace(state) if state is not None else None
    with pytest.raises(MalformedLeg) as info:
        decide(state, leg, T2)
    error = info.value
    assert isinstance(error, MalformedCommand)  # handled like any malformed input ...
    assert error.reason is Reason.MALFORMED_COMMAND  # ... with the same reason code
    assert error.detail.startswith(f"saga leg {leg.type}: ")
    assert str(error) == error.detail
    assert error.command_id == leg.command_id
    assert state == before
    return error


def refused_by_parse(data: dict[str, Any]) -> MalformedLeg:
    with pytest.raises(MalformedLeg) as info:
        parse_command(data)
    error = info.value
    assert error.reason is Reason.MALFORMED_COMMAND
    assert error.detail.startswith(f"saga leg {data['type']}: ")
    assert error.command_id == data.get("command_id")
    return error


def credit(amount: Any = 300, **changes: Any) -> dict[str, Any]:
    return {
        "type": "TRANSFER_CREDIT",
        "command_id": "t1",
        "account_id": "acc-b",
        "from_account_id": "acc-a",
        "amount": amount,
        "currency": "EUR",
        **changes,
    }


def refund(amount: Any = 300, **changes: Any) -> dict[str, Any]:
    return {
        "type": "TRANSFER_REFUND",
        "command_id": "t1",
        "account_id": "acc-a",
        "to_account_id": "acc-b",
        "amount": amount,
        "reason": "ACCOUNT_NOT_FOUND",
        **changes,
    }


def settle(amount: Any = 300, **changes: Any) -> dict[str, Any]:
    return {
        "type": "TRANSFER_SETTLE",
        "command_id": "t1",
        "account_id": "acc-a",
        "to_account_id": "acc-b",
        "amount": amount,
        **changes,
    }


LEGS = [credit, refund, settle]


def money(state: Account) -> tuple[int, int, int, int]:
    return (state.balance, state.in_flight, state.in_flight_count, state.version)


# -- what a hostile client did ----------------------------------------------------------


def test_a_refund_with_no_debit_before_it_creates_no_money() -> None:
    source = open_account("acc-a", balance=5_000)
    assert money(source) == (5_000, 0, 0, 2)

    # Well formed, so it parses; but no debit of acc-a is in flight for it to pay back.
    forged = parse_command(refund(1_000_000))
    error = refused_by_decide(source, forged)
    assert error.detail == "saga leg TRANSFER_REFUND: account 'acc-a' has no transfer in flight"
    assert money(source) == (5_000, 0, 0, 2)

    # Nor against an account that does not exist.
    error = refused_by_decide(None, forged)
    assert error.detail == (
        "saga leg TRANSFER_REFUND: account 'acc-a' does not exist, so no debit of it is in flight"
    )

    # With one real transfer of 300 in flight, only a refund of exactly 300 can be real.
    source = send_transfer(source, "t1", "acc-b", 300)
    assert money(source) == (4_700, 300, 1, 3)
    error = refused_by_decide(source, forged)
    assert error.detail == (
        "saga leg TRANSFER_REFUND: amount 1000000 is not the 300 in flight from account "
        "'acc-a' (its only transfer in flight)"
    )
    refused_by_decide(source, replace(forged, amount=301))
    refused_by_decide(source, replace(forged, amount=299))
    assert money(source) == (4_700, 300, 1, 3)

    # The real refund still comes home, to the cent.
    source, decision = step(source, replace(forged, amount=300), T3)
    assert [e.type for e in decision.events] == ["TransferRefunded"]
    assert money(source) == (5_000, 0, 0, 4)

    # ... once: a second copy finds nothing in flight any more.
    refused_by_decide(source, replace(forged, amount=300))
    assert money(source) == (5_000, 0, 0, 4)


@pytest.mark.parametrize("amount", [-4_000, -8_000])
def test_a_negative_credit_cannot_lower_a_balance(amount: int) -> None:
    destination = open_account("acc-b", balance=5_000, overdraft_limit=0)
    assert money(destination) == (5_000, 0, 0, 2)

    # On the wire: refused by the gate.
    error = refused_by_parse(credit(amount))
    assert error.detail == (
        "saga leg TRANSFER_CREDIT: field 'amount' must be from 1 to 1000000000000000"
    )
    assert error.command_id == "t1"

    # Built in code, past the gate: decide refuses it as well, and sends no refund leg.
    leg = CreditTransfer("t1", "acc-b", None, "acc-a", amount, "EUR")
    error = refused_by_decide(destination, leg)
    assert error.detail == (
        f"saga leg TRANSFER_CREDIT: amount must be from 1 to {MAX_AMOUNT} minor units, not {amount}"
    )
    assert money(destination) == (5_000, 0, 0, 2)

    # A credit of a real amount is taken as before.
    destination, decision = step(destination, replace(leg, amount=100), T3)
    assert [e.type for e in decision.events] == ["TransferCredited"]
    assert money(destination) == (5_100, 0, 0, 3)


def test_a_settle_with_no_debit_leaves_in_flight_alone() -> None:
    source = open_account("acc-a", balance=5_000)

    forged = parse_command(settle(500))
    error = refused_by_decide(source, forged)
    assert error.detail == "saga leg TRANSFER_SETTLE: account 'acc-a' has no transfer in flight"
    assert money(source) == (5_000, 0, 0, 2)

    # Two transfers in flight, of 30 and 70: together 100, each at least 1.
    source = send_transfer(source, "t1", "acc-b", 30)
    source = send_transfer(source, "t2", "acc-c", 70)
    assert money(source) == (4_900, 100, 2, 4)
    refused_by_decide(source, forged)  # 500 was never debited
    # Nor 100: the other transfer in flight holds at least one minor unit of it.
    error = refused_by_decide(source, replace(forged, amount=100))
    assert error.detail == (
        "saga leg TRANSFER_SETTLE: amount 100 is more than a transfer in flight from account "
        "'acc-a' can hold (100 in flight over 2 transfers)"
    )
    assert money(source) == (4_900, 100, 2, 4)

    # The real settlements release exactly what was debited; no seq, no new version.
    source, _ = step(source, replace(forged, amount=30), T2)
    assert money(source) == (4_900, 70, 1, 4)
    # With one transfer left, only its whole amount can end it.
    refused_by_decide(source, replace(forged, command_id="t2", to_account_id="acc-c", amount=69))
    refused_by_decide(source, replace(forged, command_id="t2", to_account_id="acc-c", amount=71))
    source, _ = step(source, replace(forged, command_id="t2", to_account_id="acc-c", amount=70))
    assert money(source) == (4_900, 0, 0, 4)
    refused_by_decide(source, replace(forged, amount=30))
    assert money(source) == (4_900, 0, 0, 4)


def test_a_closed_account_takes_no_refund_or_settlement() -> None:
    source = open_account("acc-a")
    source, _ = step(source, CloseAccount("x", "acc-a", None))
    assert (source.status, money(source)) == (AccountStatus.CLOSED, (0, 0, 0, 2))
    for data in (refund(1), settle(1)):
        refused_by_decide(source, parse_command(data))
    assert (source.status, money(source)) == (AccountStatus.CLOSED, (0, 0, 0, 2))


# -- every field of every leg, strictly -------------------------------------------------

BAD_INTEGER_AMOUNTS = [0, -1, -4_000, -(2**63), MAX_AMOUNT + 1, 2**63 - 1, 2**63, 10**30]
NOT_INTEGERS = [10.0, 10.5, -4_000.0, True, False, "10", None, [10], {"value": 10}]


@pytest.mark.parametrize("leg", LEGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("amount", BAD_INTEGER_AMOUNTS)
def test_a_leg_amount_outside_1_to_max_is_malformed(leg: Any, amount: int) -> None:
    # A public command's out-of-range amount is the domain's INVALID_AMOUNT; a leg's
    # cannot come from an accepted debit, so it is malformed.
    error = refused_by_parse(leg(amount))
    assert (
        error.detail
        == f"saga leg {leg(amount)['type']}: field 'amount' must be from 1 to {MAX_AMOUNT}"
    )


@pytest.mark.parametrize("leg", LEGS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("amount", NOT_INTEGERS, ids=repr)
def test_a_leg_amount_that_is_not_an_integer_is_malformed(leg: Any, amount: Any) -> None:
    error = refused_by_parse(leg(amount))
    assert error.detail.endswith("field 'amount' must be an integer (minor units)")


def test_the_amounts_of_one_and_of_the_maximum_are_read_on_every_leg() -> None:
    for leg in LEGS:
        assert parse_command(leg(1)).amount == 1
        assert parse_command(leg(MAX_AMOUNT)).amount == MAX_AMOUNT


@pytest.mark.parametrize("amount", [*BAD_INTEGER_AMOUNTS, *NOT_INTEGERS[:5]], ids=repr)
def test_decide_refuses_a_bad_amount_on_every_leg_built_in_code(amount: Any) -> None:
    """Past the gate (a leg built in code): the guard in decide holds on its own."""
    # Plenty in flight, so the amount is all that is wrong with each leg.
    source = send_transfer(open_account("acc-a", balance=MAX_AMOUNT), "t1", "acc-b", MAX_AMOUNT)
    destination = open_account("acc-b", balance=5_000)
    assert money(source) == (0, MAX_AMOUNT, 1, 3)
    for state, data in ((destination, credit()), (source, refund()), (source, settle())):
        leg = replace(parse_command(data), amount=amount)
        error = refused_by_decide(state, leg)
        assert error.detail.endswith(
            f"amount must be from 1 to {MAX_AMOUNT} minor units, not {amount!r}"
        )
    assert money(source) == (0, MAX_AMOUNT, 1, 3)
    assert money(destination) == (5_000, 0, 0, 2)


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "E1R", "", " EUR", "EUR\n", 978, None])
def test_a_credit_with_a_malformed_currency_is_malformed(currency: Any) -> None:
    error = refused_by_parse(credit(currency=currency))
    assert "currency" in error.detail


def test_a_credit_in_another_currency_is_refunded_not_credited() -> None:
    # A well-formed currency that is not the destination's: the credit is refused the
    # usual way (a refund leg back to the source), and the destination does not move.
    destination = open_account("acc-b", balance=5_000)
    destination, decision = step(destination, parse_command(credit(currency="USD")), T2)
    assert decision.events == []
    assert decision.legs == [
        RefundTransfer("t1", "acc-a", None, "acc-b", 300, Reason.CURRENCY_MISMATCH.value)
    ]
    assert money(destination) == (5_000, 0, 0, 2)


def test_the_refund_reasons_are_exactly_what_a_credit_is_refused_for() -> None:
    leg = CreditTransfer("t1", "acc-b", None, "acc-a", 300, "EUR")
    closed, _ = step(open_account("acc-b"), CloseAccount("x", "acc-b", None))
    destinations = [
        None,  # ACCOUNT_NOT_FOUND
        closed,  # ACCOUNT_CLOSED
        open_account("acc-b", currency="USD"),  # CURRENCY_MISMATCH
        replace(open_account("acc-b"), balance=MAX_BALANCE),  # INVALID_AMOUNT
    ]
    reasons = set()
    for destination in destinations:
        (refund_leg,) = decide(destination, leg, T2).legs
        reasons.add(refund_leg.reason)
    assert (
        reasons
        == REFUND_REASONS
        == {
            "ACCOUNT_NOT_FOUND",
            "ACCOUNT_CLOSED",
            "CURRENCY_MISMATCH",
            "INVALID_AMOUNT",
        }
    )


@pytest.mark.parametrize(
    "reason",
    [
        "INSUFFICIENT_FUNDS",
        "SAME_ACCOUNT",
        "BALANCE_NOT_ZERO",
        "VERSION_CONFLICT",
        "MALFORMED_COMMAND",
        "ACCOUNT_ALREADY_EXISTS",
        "account_not_found",
        "ACCOUNT_NOT_FOUND ",
        "NOPE",
        "",
        None,
        3,
        ["ACCOUNT_NOT_FOUND"],
    ],
    ids=repr,
)
def test_a_refund_reason_a_credit_cannot_be_refused_for_is_malformed(reason: Any) -> None:
    error = refused_by_parse(refund(reason=reason))
    assert error.detail == (
        "saga leg TRANSFER_REFUND: field 'reason' must be one of ACCOUNT_CLOSED, "
        "ACCOUNT_NOT_FOUND, CURRENCY_MISMATCH, INVALID_AMOUNT (what a credit can be "
        "refused for)"
    )


def test_decide_refuses_a_bad_refund_reason_built_in_code() -> None:
    source = send_transfer(open_account("acc-a", balance=500), "t1", "acc-b", 300)
    assert money(source) == (200, 300, 1, 3)
    leg = replace(parse_command(refund()), reason="INSUFFICIENT_FUNDS")
    error = refused_by_decide(source, leg)
    assert error.detail.startswith(
        "saga leg TRANSFER_REFUND: reason 'INSUFFICIENT_FUNDS' is not one a credit is refused for"
    )
    assert money(source) == (200, 300, 1, 3)


@pytest.mark.parametrize(
    ("leg", "counterparty"),
    [(credit, "from_account_id"), (refund, "to_account_id"), (settle, "to_account_id")],
    ids=["credit", "refund", "settle"],
)
def test_a_leg_whose_counterparty_is_its_own_account_is_malformed(
    leg: Any, counterparty: str
) -> None:
    data = leg()
    error = refused_by_parse({**data, counterparty: data["account_id"]})
    assert error.detail == (
        f"saga leg {data['type']}: field {counterparty!r} must name another account than "
        "'account_id'"
    )

    # Built in code, decide refuses it too, whatever the account holds.
    source = send_transfer(open_account("acc-a", balance=500), "t1", "acc-b", 300)
    destination = open_account("acc-b", balance=5_000)
    state = destination if data["type"] == "TRANSFER_CREDIT" else source
    command = replace(parse_command(data), **{counterparty: data["account_id"]})
    error = refused_by_decide(state, command)
    assert error.detail == (
        f"saga leg {data['type']}: its {counterparty} {data['account_id']!r} is the account itself"
    )
    assert money(source) == (200, 300, 1, 3)
    assert money(destination) == (5_000, 0, 0, 2)


@pytest.mark.parametrize("leg", LEGS, ids=lambda f: f.__name__)
def test_a_leg_never_carries_an_expected_version(leg: Any) -> None:
    error = refused_by_parse(leg(expected_version=2))
    assert error.detail.endswith("field 'expected_version' is never set on a saga leg")
    # null is the same as leaving it out
    assert parse_command(leg(expected_version=None)) == parse_command(leg())


LEG_FIELDS = [(leg, name) for leg in LEGS for name in leg() if name != "type"]
LEG_ACCOUNT_FIELDS = [(leg, name) for leg, name in LEG_FIELDS if name.endswith("account_id")]


@pytest.mark.parametrize(
    ("leg", "name"), LEG_FIELDS, ids=[f"{leg.__name__}-{name}" for leg, name in LEG_FIELDS]
)
def test_a_leg_missing_a_field_is_malformed(leg: Any, name: str) -> None:
    data = leg()
    error = refused_by_parse({k: v for k, v in data.items() if k != name})
    assert error.detail.endswith(f"missing field {name!r}")


@pytest.mark.parametrize(
    ("leg", "name"),
    LEG_ACCOUNT_FIELDS,
    ids=[f"{leg.__name__}-{name}" for leg, name in LEG_ACCOUNT_FIELDS],
)
@pytest.mark.parametrize("value", ["", "-x", "a b", "a/b", "é", "x" * 65, "acc-1\n", 12, None])
def test_a_leg_with_a_malformed_account_id_is_malformed(leg: Any, name: str, value: Any) -> None:
    error = refused_by_parse({**leg(), name: value})
    assert name in error.detail


def test_a_leg_type_from_a_client_is_refused_as_an_unknown_type() -> None:
    # The public gate (HTTP) refuses the type itself: a plain MalformedCommand there.
    for leg in LEGS:
        with pytest.raises(MalformedCommand) as info:
            parse_command(leg(), allow_internal=False)
        assert not isinstance(info.value, MalformedLeg)
        assert "type" in info.value.detail


def test_a_public_amount_out_of_range_is_still_the_domains_invalid_amount() -> None:
    # Unchanged for public commands: parsed, then rejected with an event.
    deposit = parse_command(
        {"type": "DEPOSIT", "command_id": "d", "account_id": "acc-a", "amount": -4_000}
    )
    state = open_account("acc-a", balance=5_000)
    (event,) = decide(state, deposit, T1).events
    assert isinstance(event, ev.CommandRejected)
    assert event.reason == Reason.INVALID_AMOUNT.value
    assert evolve(state, event) == state
