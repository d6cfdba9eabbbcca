"""An account's queue of pending inputs: released in partition order, each exactly once.

The story checks the queue after every step; the properties let answers arrive in any
order, some of them more than once, some stale, and interleave them with new inputs.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from banking_app.domain import Deposit
from banking_app.domain.command_ids import fingerprint
from banking_app.domain.commands import Answer
from banking_app.event_processor.idempotency import AccountRow, admit
from banking_app.event_processor.pending import Pending, enqueue, record_answer, release


def entry(command_id: str, offset: int, index: int = 0, leg: bool = False) -> Pending:
    command = {"type": "DEPOSIT", "command_id": command_id, "account_id": "a", "amount": 1}
    return Pending(command, (offset, index), 1.0, "" if leg else f"{offset:032x}")


def test_inputs_wait_for_the_answers_before_them_and_leave_in_order() -> None:
    c1, c2, leg, c3 = entry("c1", 1), entry("c2", 2), entry("t", 3, leg=True), entry("c3", 4)
    queue = ()
    for item in (c1, c2, leg, c3):
        queue = enqueue(queue, item)
    assert release(queue) == ((), queue)

    # c2's answer comes first: c2 is ready, but c1 before it is not.
    queue = record_answer(queue, "c2", (2, 0), c2.fingerprint, Answer.CLAIMED)
    assert [e.answer for e in queue] == [None, Answer.CLAIMED, None, None]
    assert release(queue)[0] == ()

    # c1's answer: c1, c2 and the leg behind them (it needs no claim) leave, in order.
    queue = record_answer(queue, "c1", (1, 0), c1.fingerprint, Answer.REUSED)
    ready, queue = release(queue)
    assert [e.command["command_id"] for e in ready] == ["c1", "c2", "t"]
    assert [e.answer for e in ready] == [Answer.REUSED, Answer.CLAIMED, None]
    assert queue == (c3,)

    # A copy of c1's answer, or one that names the wrong fingerprint, changes nothing.
    assert record_answer(queue, "c1", (1, 0), c1.fingerprint, Answer.CLAIMED) is queue
    assert record_answer(queue, "c3", (4, 0), c1.fingerprint, Answer.CLAIMED) is queue
    assert record_answer(queue, "cX", (4, 0), c3.fingerprint, Answer.CLAIMED) is queue

    queue = record_answer(queue, "c3", (4, 0), c3.fingerprint, Answer.DUPLICATE)
    # Its answer is kept: a second one for it is stale.
    assert record_answer(queue, "c3", (4, 0), c3.fingerprint, Answer.CLAIMED) is queue
    assert release(queue) == ((queue[0],), ())


def test_a_queue_holds_its_partitions_order() -> None:
    queue = enqueue((), entry("c1", 5, 1))
    with pytest.raises(ValueError, match="partition's order"):
        enqueue(queue, entry("c2", 5, 1))
    with pytest.raises(ValueError):
        enqueue(queue, entry("c2", 4))
    assert len(enqueue(queue, entry("c2", 5, 2))) == 2


def test_a_row_keeps_its_queue_through_its_stored_form() -> None:
    deposit = Deposit(command_id="c1", account_id="a", amount=5)
    taken = admit(None, deposit, (3, 0), 1_700_000_000.25, None)
    assert not taken.duplicate
    [pending] = taken.row.pending
    assert pending == Pending(deposit.to_dict(), (3, 0), 1_700_000_000.25, fingerprint(deposit))
    assert taken.row.last_position == (3, 0)
    assert taken.row.recent == ()  # a public command's id is the claim's to judge
    assert AccountRow.from_dict(taken.row.to_dict()) == taken.row
    answered = record_answer(taken.row.pending, "c1", (3, 0), pending.fingerprint, Answer.CLAIMED)
    row = AccountRow(pending=answered)
    assert AccountRow.from_dict(row.to_dict()) == row
    # An empty queue is not written: rows stored before queues existed read the same.
    assert "pending" not in AccountRow().to_dict()

    # The same input again (a redelivery) is a duplicate, the row unchanged.
    again = admit(taken.row, deposit, (3, 0), 1_700_000_000.25, None)
    assert again.duplicate and again.row == taken.row


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Pending], list[tuple[str, int]]]:
    """Inputs in partition order, and a schedule that interleaves their arrival with
    answers in any order, answers sent more than once, and stale ones."""
    count = draw(st.integers(1, 12))
    items = []
    offset = 0
    for number in range(count):
        offset += draw(st.integers(0, 2))
        index = draw(st.integers(0, 2))
        if items and (offset, index) <= items[-1].position:
            offset = items[-1].position[0] + 1
        items.append(entry(f"c{number}", offset, index, leg=draw(st.booleans())))
    answers = [("answer", i) for i, item in enumerate(items) if item.needs_claim]
    answers += draw(st.lists(st.sampled_from(answers), max_size=6)) if answers else []
    arrivals = [("arrive", i) for i in range(len(items))]
    # Any interleaving that keeps arrivals in order and an answer after its arrival.
    schedule: list[tuple[str, int]] = []
    rest = draw(st.permutations(answers))
    arrived = 0
    pending_answers = list(rest)
    while arrived < len(arrivals) or pending_answers:
        ready = [a for a in pending_answers if a[1] < arrived]
        if arrived < len(arrivals) and (not ready or draw(st.booleans())):
            schedule.append(arrivals[arrived])
            arrived += 1
        else:
            choice = draw(st.sampled_from(ready))
            pending_answers.remove(choice)
            schedule.append(choice)
    return items, schedule


@given(histories(), st.sampled_from(list(Answer)))
def test_each_input_is_released_exactly_once_and_in_partition_order(
    history: tuple[list[Pending], list[tuple[str, int]]], said: Answer
) -> None:
    items, schedule = history
    queue: tuple[Pending, ...] = ()
    released: list[Pending] = []
    for kind, number in schedule:
        item = items[number]
        if kind == "arrive":
            queue = enqueue(queue, item)
        else:
            queue = record_answer(
                queue, item.command["command_id"], item.position, item.fingerprint, said
            )
        ready, queue = release(queue)
        released += ready
        # What is left is empty or waits at its head: nothing decidable is held back.
        assert not queue or not queue[0].ready
    assert queue == ()
    assert [e.position for e in released] == [e.position for e in items]
    assert [e.answer for e in released] == [said if e.needs_claim else None for e in items]
