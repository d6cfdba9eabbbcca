"""The read model's fold: the same events give the same views, and redelivery changes nothing."""

from __future__ import annotations

import pytest

from banking_app.domain import commands as cmd
from banking_app.domain import decide, evolve
from banking_app.domain.events import Event
from banking_app.query_service import read_model


def run(*commands: cmd.Command) -> list[Event]:
    """Events of a command sequence on one account, decided by the real domain."""
    state, produced = None, []
    for index, command in enumerate(commands):
        for event in decide(state, command, f"2026-01-01T00:00:0{index}.000Z").events:
            produced.append(event)
            state = evolve(state, event)
    return produced


def fold(events: list[Event]) -> dict | None:
    view = None
    for event in events:
        view = read_model.apply_to_view(view, event)
    return view


OPEN = cmd.CreateAccount(command_id="c1", account_id="a", owner="Ann", currency="EUR")
DEPOSIT = cmd.Deposit(command_id="c2", account_id="a", amount=700)
TRANSFER = cmd.TransferMoney(command_id="c3", account_id="a", to_account_id="b", amount=200)
SETTLE = cmd.SettleTransfer(command_id="c3", account_id="a", to_account_id="b", amount=200)
TOO_MUCH = cmd.Withdraw(command_id="c4", account_id="a", amount=10_000)
DEPOSIT_AGAIN = cmd.Deposit(command_id="c5", account_id="a", amount=50)


def test_the_view_follows_the_events() -> None:
    events = run(OPEN, DEPOSIT, TRANSFER)
    view = fold(events)
    assert view is not None
    assert (view["balance"], view["version"], view["in_flight"]) == (500, 3, 200)
    assert view["created_at"] == "2026-01-01T00:00:00.000Z"
    assert view["updated_at"] == "2026-01-01T00:00:02.000Z"


def test_redelivered_events_change_nothing() -> None:
    events = run(OPEN, DEPOSIT, TRANSFER, SETTLE)
    once = fold(events)
    # A worker that died after producing re-emits identical events, in any overlap.
    twice = fold([*events[:3], *events[1:], *events])
    assert twice == once
    assert once is not None and once["in_flight"] == 0


def test_an_event_after_a_missing_one_is_refused_and_the_view_kept() -> None:
    events = run(OPEN, DEPOSIT, TRANSFER, TOO_MUCH, DEPOSIT_AGAIN)
    view = fold(events[:2])
    assert view is not None and view["version"] == 2

    with pytest.raises(read_model.SeqGap) as refused:
        read_model.apply_to_view(view, events[4])  # seq 4: seq 3 never arrived

    assert (refused.value.version, refused.value.seq) == (2, 4)
    assert view["balance"] == 700 and view["in_flight"] == 0
    assert fold([*events[:2], events[2], events[4]])["version"] == 4


def test_a_rejection_changes_no_view_but_is_an_outcome() -> None:
    events = run(OPEN, DEPOSIT, TOO_MUCH)
    assert fold(events) == fold(events[:2])
    outcome = read_model.apply_to_outcome(None, events[-1])
    assert (outcome["status"], outcome["reason"]) == ("rejected", "INSUFFICIENT_FUNDS")


def test_history_items_carry_counterparty_and_balance_after() -> None:
    events = run(OPEN, DEPOSIT, TRANSFER, SETTLE)
    items, view = [], None
    for event in events:
        view = read_model.apply_to_view(view, event)
        assert view is not None
        items.append(read_model.history_item(event, view))
    assert items[-1] is None  # TransferSettled has no seq: it is bookkeeping, not a line
    debit = items[2]
    assert debit is not None
    assert debit["counterparty_account_id"] == "b"
    assert (debit["seq"], debit["amount"], debit["balance"]) == (3, 200, 500)
    assert read_model.history_key("a", 3) < read_model.history_key("a", 10)


def test_a_transfer_outcome_is_pending_until_credited_or_refunded() -> None:
    debit = run(OPEN, DEPOSIT, TRANSFER)[-1]
    pending = read_model.apply_to_outcome(None, debit)
    assert pending["status"] == "pending"
    assert read_model.apply_to_outcome(pending, debit) == pending  # deduplicated by event id

    refund = decide(
        evolve(fold_state(OPEN, DEPOSIT), debit),
        cmd.RefundTransfer(
            command_id="c3",
            account_id="a",
            to_account_id="b",
            amount=200,
            reason="ACCOUNT_NOT_FOUND",
        ),
        "2026-01-01T00:00:09.000Z",
    ).events[0]
    failed = read_model.apply_to_outcome(pending, refund)
    assert (failed["status"], failed["reason"]) == ("rejected", "ACCOUNT_NOT_FOUND")
    assert [e["type"] for e in failed["events"]] == ["TransferDebited", "TransferRefunded"]


def fold_state(*commands: cmd.Command):
    state = None
    for event in run(*commands):
        state = evolve(state, event)
    return state


def test_limits_show_on_the_view_and_their_history_line_keeps_the_balance() -> None:
    limits = cmd.SetLimits(command_id="c6", account_id="a", daily_withdrawal_limit=300)
    events = run(OPEN, DEPOSIT, limits)
    view = fold(events)
    assert view is not None
    assert (view["daily_withdrawal_limit"], view["daily_transfer_limit"]) == (300, None)
    assert view["balance"] == 700 and view["version"] == 3
    line = read_model.history_item(events[-1], view)
    assert line is not None
    assert (line["type"], line["amount"], line["balance"]) == ("LimitsSet", 0, 700)
    lifted = fold([*events, *run(OPEN, DEPOSIT, limits, cmd.SetLimits("c7", "a"))[3:]])
    assert lifted is not None and lifted["daily_withdrawal_limit"] is None


def test_a_view_written_before_limits_existed_shows_none() -> None:
    view = fold(run(OPEN))
    assert view is not None
    for name in ("daily_withdrawal_limit", "daily_transfer_limit"):
        del view[name]
    shown = read_model.public_view(view)
    assert (shown["daily_withdrawal_limit"], shown["daily_transfer_limit"]) == (None, None)
