"""``processing.process``: one input applied to one account row, at most once.

The stories below replay what the command agent sees on at-least-once delivery: the
same record again (a restart from an older committed offset), a copy at a later offset
(a producer retry), and a crash between the two table writes, and check the row and
the emitted events after every step.
"""

from __future__ import annotations

import json

from banking_app.domain import (
    Account,
    AccountStatus,
    CloseAccount,
    CreateAccount,
    CreditTransfer,
    Deposit,
    SettleTransfer,
    TransferMoney,
    Withdraw,
)
from banking_app.domain import events as ev
from banking_app.event_processor.idempotency import (
    RECENT_WINDOW,
    AccountRow,
    Result,
    as_position,
    process,
    stored_position,
)

T1 = "2024-05-01T09:00:01.000Z"
T2 = "2024-05-01T09:00:02.000Z"
T3 = "2024-05-01T09:00:03.000Z"

CREATE = CreateAccount(command_id="c1", account_id="acc-a", owner="Alice", currency="EUR")


def applied(result: Result) -> AccountRow:
    assert not result.duplicate
    assert result.decision.events
    return result.row


def duplicate(result: Result, row: AccountRow) -> None:
    """A duplicate emits nothing and hands back the row exactly as it was."""
    assert result.duplicate
    assert result.decision.events == []
    assert result.decision.legs == []
    assert result.row == row


def created_row(offset: int = 10) -> AccountRow:
    row = applied(process(None, CREATE, offset, T1, None))
    assert row.account is not None
    assert (row.account.version, row.last_offset, row.recent) == (1, offset, ("c1",))
    return row


def test_a_first_input_creates_the_row() -> None:
    result = process(None, CREATE, 10, T1, None)
    assert not result.duplicate
    assert [e.type for e in result.decision.events] == ["AccountCreated"]
    assert result.decision.legs == []
    row = result.row
    assert row == AccountRow(
        account=Account(
            account_id="acc-a",
            owner="Alice",
            currency="EUR",
            overdraft_limit=0,
            version=1,
            created_at=T1,
            updated_at=T1,
        ),
        last_offset=10,
        recent=("c1",),
    )


def test_the_same_input_at_the_same_offset_is_a_duplicate() -> None:
    row = created_row(offset=10)

    # Redelivered after a restart from an older committed offset, both tables written.
    duplicate(process(row, CREATE, 10, T1, 10), row)
    # ...and also when the command-id table lost its write.
    duplicate(process(row, CREATE, 10, T1, None), row)
    assert (row.account.version, row.last_offset, row.recent) == (1, 10, ("c1",))

    deposit = Deposit(command_id="d1", account_id="acc-a", amount=100)
    row = applied(process(row, deposit, 11, T2, None))
    assert (row.account.balance, row.account.version, row.last_offset) == (100, 2, 11)
    assert row.recent == ("c1", "d1")

    duplicate(process(row, deposit, 11, T2, 11), row)
    assert (row.account.balance, row.account.version, row.last_offset) == (100, 2, 11)


def test_any_input_at_or_below_the_last_offset_is_a_duplicate() -> None:
    row = created_row(offset=10)
    row = applied(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=5), 20, T2, None)
    )
    assert (row.account.balance, row.last_offset) == (5, 20)

    # A restart from an older committed offset replays inputs this row already includes,
    # whatever their ids.
    duplicate(
        process(row, Deposit(command_id="d0", account_id="acc-a", amount=7), 15, T1, None), row
    )
    duplicate(
        process(row, Deposit(command_id="d0", account_id="acc-a", amount=7), 20, T1, None), row
    )
    assert (row.account.balance, row.last_offset, row.recent) == (5, 20, ("c1", "d1"))

    # The next offset is new.
    row = applied(
        process(row, Deposit(command_id="d2", account_id="acc-a", amount=7), 21, T2, None)
    )
    assert (row.account.balance, row.last_offset) == (12, 21)


def test_the_same_command_id_at_a_later_offset_is_a_duplicate() -> None:
    row = created_row(offset=10)
    withdraw = Withdraw(command_id="w1", account_id="acc-a", amount=1)
    deposit = Deposit(command_id="d1", account_id="acc-a", amount=100)
    row = applied(process(row, deposit, 11, T2, None))
    assert (row.account.balance, row.account.version) == (100, 2)
    row = applied(process(row, withdraw, 12, T2, None))
    assert (row.account.balance, row.account.version) == (99, 3)

    # A producer retry: the deposit again, a few records later. The command-id table
    # has no entry (its write was lost), so only the row's recent ids can catch it.
    duplicate(process(row, deposit, 13, T3, None), row)
    assert (row.account.balance, row.account.version, row.last_offset) == (99, 3, 12)
    # With the table entry it is caught as well.
    duplicate(process(row, deposit, 14, T3, 11), row)
    assert (row.account.balance, row.account.version, row.last_offset) == (99, 3, 12)

    # Another command is not held up by the duplicate.
    row = applied(
        process(row, Deposit(command_id="d2", account_id="acc-a", amount=1), 15, T3, None)
    )
    assert (row.account.balance, row.account.version, row.last_offset) == (100, 4, 15)
    assert row.recent == ("c1", "d1", "w1", "d2")


def test_a_rejected_command_is_remembered_too() -> None:
    row = created_row(offset=10)
    too_much = Withdraw(command_id="w1", account_id="acc-a", amount=1)
    result = process(row, too_much, 11, T2, None)
    assert not result.duplicate
    (rejection,) = result.decision.events
    assert isinstance(rejection, ev.CommandRejected)
    assert rejection.reason == "INSUFFICIENT_FUNDS"
    # the account is unchanged, the bookkeeping is not
    assert result.row.account == row.account
    assert (result.row.last_offset, result.row.recent) == (11, ("c1", "w1"))
    row = result.row

    # Retrying the same id after funding is still the same command: its outcome stands.
    row = applied(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=5), 12, T2, None)
    )
    assert row.account.balance == 5
    duplicate(process(row, too_much, 13, T3, None), row)
    assert (row.account.balance, row.account.version) == (5, 2)


def test_inputs_for_an_account_that_does_not_exist_are_remembered() -> None:
    result = process(None, Deposit(command_id="d1", account_id="acc-z", amount=5), 3, T1, None)
    assert not result.duplicate
    assert [e.type for e in result.decision.events] == ["CommandRejected"]
    assert result.row == AccountRow(account=None, last_offset=3, recent=("d1",))
    row = result.row
    duplicate(
        process(row, Deposit(command_id="d1", account_id="acc-z", amount=5), 9, T2, None), row
    )


def test_a_crash_between_the_two_table_writes_reapplies_the_input_identically() -> None:
    row = created_row(offset=10)
    deposit = Deposit(command_id="d1", account_id="acc-a", amount=100)

    # First attempt: the events went out, the command-id table says offset 11, but the
    # row that came back after the crash is the one from before.
    first = process(row, deposit, 11, T2, None)
    assert not first.duplicate
    assert (first.row.account.balance, first.row.last_offset) == (100, 11)

    again = process(row, deposit, 11, T2, 11)
    assert not again.duplicate
    assert again.decision == first.decision  # the same events, ids and all
    assert [e.to_dict() for e in again.decision.events] == [
        e.to_dict() for e in first.decision.events
    ]
    assert again.row == first.row
    assert (again.row.account.balance, again.row.account.version, again.row.last_offset) == (
        100,
        2,
        11,
    )
    # the stale row itself is not changed by either attempt
    assert (row.account.balance, row.last_offset) == (0, 10)


def test_a_crash_between_writes_resends_identical_saga_legs() -> None:
    row = created_row(offset=10)
    row = applied(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=100), 11, T1, None)
    )
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=40)
    first = process(row, transfer, 12, T2, None)
    again = process(row, transfer, 12, T2, 12)
    assert not again.duplicate
    assert again.decision.legs == first.decision.legs != []
    assert again.decision.events == first.decision.events
    assert again.row == first.row
    assert (again.row.account.balance, again.row.account.in_flight) == (60, 40)


def test_an_input_seen_at_another_offset_is_a_duplicate() -> None:
    row = created_row(offset=10)
    deposit = Deposit(command_id="d1", account_id="acc-a", amount=100)

    # Recorded at offset 11 in the command-id table, not in this row's recent ids (as if
    # it had dropped out of the window): a copy at 30 is still a duplicate.
    duplicate(process(row, deposit, 30, T3, 11), row)
    # A recorded offset *later* than this copy is just as much another copy.
    duplicate(process(row, deposit, 30, T3, 31), row)
    assert (row.account.balance, row.account.version, row.last_offset) == (0, 1, 10)

    # Without any record of it, the same input is new.
    row = applied(process(row, deposit, 30, T3, None))
    assert (row.account.balance, row.account.version, row.last_offset) == (100, 2, 30)


def test_a_saga_leg_is_told_apart_from_its_transfer() -> None:
    row = created_row(offset=10)
    row = applied(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=100), 11, T1, None)
    )
    transfer = TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=40)
    row = applied(process(row, transfer, 12, T2, None))
    assert (row.account.balance, row.account.in_flight, row.account.in_flight_count) == (60, 40, 1)

    # The settle leg carries the same command id but is a different input.
    settle = SettleTransfer(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=40)
    result = process(row, settle, 13, T2, None)
    assert not result.duplicate
    assert [e.type for e in result.decision.events] == ["TransferSettled"]
    row = result.row
    assert (row.account.balance, row.account.in_flight, row.account.in_flight_count) == (60, 0, 0)
    assert row.recent == ("c1", "d1", "t1", "t1/settle")
    assert row.account.version == 3  # a settle carries no seq

    # A second copy of the leg would put the money in flight below zero: it is a duplicate.
    duplicate(process(row, settle, 14, T3, None), row)
    duplicate(process(row, settle, 15, T3, 13), row)
    assert (row.account.in_flight, row.account.in_flight_count) == (0, 0)


def test_recent_ids_are_bounded_by_the_window() -> None:
    assert RECENT_WINDOW == 16
    row = created_row(offset=0)
    ids = ["c1"]
    for n in range(1, RECENT_WINDOW + 5):
        command_id = f"d{n}"
        row = applied(
            process(row, Deposit(command_id=command_id, account_id="acc-a", amount=1), n, T1, None)
        )
        ids.append(command_id)
        assert len(row.recent) == min(len(ids), RECENT_WINDOW)
        assert row.recent == tuple(ids[-RECENT_WINDOW:])
        assert row.account.balance == n
    assert row.last_offset == RECENT_WINDOW + 4
    assert "d1" not in row.recent
    assert "d5" in row.recent

    # A copy of an id still in the window is caught by the row alone...
    late = RECENT_WINDOW + 10
    duplicate(
        process(row, Deposit(command_id="d5", account_id="acc-a", amount=1), late, T2, None), row
    )
    # ...one that has dropped out needs the command-id table.
    duplicate(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=1), late, T2, 1), row
    )
    assert row.account.balance == RECENT_WINDOW + 4
    # (Without the table entry, the row alone can no longer tell: that is the window.)
    result = process(row, Deposit(command_id="d1", account_id="acc-a", amount=1), late, T2, None)
    assert not result.duplicate
    assert result.row.account.balance == RECENT_WINDOW + 5
    assert result.row.recent[-1] == "d1"
    assert len(result.row.recent) == RECENT_WINDOW


def test_a_row_reads_back_from_its_dict() -> None:
    empty = AccountRow()
    assert empty.to_dict() == {"account": None, "last_offset": -1, "recent": []}
    assert AccountRow.from_dict(empty.to_dict()) == empty

    row = created_row(offset=10)
    row = applied(
        process(row, Deposit(command_id="d1", account_id="acc-a", amount=9), 11, T2, None)
    )
    row = applied(
        process(
            row,
            TransferMoney(command_id="t1", account_id="acc-a", to_account_id="acc-b", amount=4),
            12,
            T2,
            None,
        )
    )
    # Through JSON, as the table stores it.
    stored = json.loads(json.dumps(row.to_dict()))
    assert stored["account"]["status"] == "OPEN"
    assert stored["recent"] == ["c1", "d1", "t1"]
    again = AccountRow.from_dict(stored)
    assert again == row
    assert again.account.status is AccountStatus.OPEN
    assert isinstance(again.recent, tuple)
    assert (again.account.balance, again.account.in_flight, again.account.in_flight_count) == (
        5,
        4,
        1,
    )

    # A closed account keeps its status.
    closed = created_row(offset=1)
    closed = applied(process(closed, CloseAccount(command_id="x", account_id="acc-a"), 2, T3, None))
    stored = json.loads(json.dumps(closed.to_dict()))
    assert stored["account"]["status"] == "CLOSED"
    again = AccountRow.from_dict(stored)
    assert again == closed
    assert again.account.status is AccountStatus.CLOSED
    assert not again.account.is_open

    # A row for an account that was never created (only rejections) reads back too.
    ghost = process(None, Deposit(command_id="d", account_id="acc-z", amount=1), 4, T1, None).row
    assert AccountRow.from_dict(json.loads(json.dumps(ghost.to_dict()))) == ghost


def test_a_crash_after_the_row_write_still_catches_a_late_copy() -> None:
    # What the agent does per input: process, publish, write the row, then write
    # command-offsets; for a duplicate, only the offset the result asks to record.
    command_offsets = {"c1": 10}
    row = created_row(offset=10)
    deposit = Deposit(command_id="d1", account_id="acc-a", amount=100)

    result = process(row, deposit, 11, T1, command_offsets.get("d1"))
    assert not result.duplicate
    row = result.row  # the row is written ...
    # ... and the worker dies before command_offsets["d1"] = 11.
    assert (row.account.balance, row.last_offset) == (100, 11)

    # Redelivered after the restart: a duplicate by the row, whose offset the agent
    # now records (the write the crash interrupted).
    again = process(row, deposit, 11, T1, command_offsets.get("d1"))
    assert again.duplicate and again.record_offset
    command_offsets["d1"] = 11

    # The account moves on by a window's worth of inputs.
    for offset in range(12, 12 + RECENT_WINDOW):
        other = Deposit(command_id=f"x{offset}", account_id="acc-a", amount=1)
        row = applied(process(row, other, offset, T2, command_offsets.get(other.dedupe_id)))
        command_offsets[other.dedupe_id] = offset
    assert "d1" not in row.recent
    assert row.account.balance == 100 + RECENT_WINDOW

    # A producer retry of the deposit, long after: it must not be paid out twice.
    late = process(row, deposit, 99, T3, command_offsets.get("d1"))
    duplicate(late, row)


def test_legs_sharing_a_record_are_ordered_by_their_index() -> None:
    """A bundle record holds several legs at one offset: each is applied once, in order."""
    row = created_row(offset=10)
    legs = [
        CreditTransfer(
            command_id=f"t{n}", account_id="acc-a", from_account_id="acc-b", amount=n,
            currency="EUR",
        )
        for n in (1, 2, 3)
    ]  # fmt: skip
    for index, leg in enumerate(legs):
        row = applied(process(row, leg, (20, index), T2, None))
        assert (row.last_offset, row.last_index, row.last_position) == (20, index, (20, index))
    assert row.account is not None and row.account.balance == 6

    # The whole record delivered again: each leg is a duplicate by the row's position,
    # and asks for its position to be recorded (the command-id write may be lost).
    for index, leg in enumerate(legs[:2]):
        again = process(row, leg, (20, index), T2, None)
        duplicate(again, row)
        assert again.record_offset
    # Recorded at its own position, a leg is re-applied there when the row was lost.
    fresh = created_row(offset=10)
    assert not process(fresh, legs[1], (20, 1), T2, (20, 1)).duplicate
    # Recorded at another position of the same record, it is a copy.
    duplicate(process(fresh, legs[1], (20, 2), T2, (20, 1)), fresh)


def test_positions_are_stored_compactly_and_read_back() -> None:
    assert stored_position((42, 0)) == 42  # as earlier releases stored offsets
    assert stored_position((42, 3)) == [42, 3]
    for position in ((42, 0), (42, 3)):
        stored = json.loads(json.dumps(stored_position(position)))
        assert as_position(stored) == position

    # A row stored before bundles existed has no index: it reads as index 0.
    row = created_row(offset=10)
    old = row.to_dict()
    assert "last_index" not in old
    assert AccountRow.from_dict(old).last_position == (10, 0)
    later = applied(
        process(row, Deposit(command_id="d", account_id="acc-a", amount=5), (11, 2), T2, None)
    )
    assert AccountRow.from_dict(json.loads(json.dumps(later.to_dict()))) == later
