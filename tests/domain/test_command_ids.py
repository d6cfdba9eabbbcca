"""The claim that makes a command id bank-wide, told step by step.

Each story claims an id as the ``command-claims`` table would see the claims arrive,
and checks the stored claim and the answer after every step.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from banking_app.domain import Deposit, TransferMoney, Withdraw, parse_command
from banking_app.domain import events as ev
from banking_app.domain.command_ids import (
    Claim,
    answer,
    fingerprint,
    reused_rejection,
    reused_use_id,
)
from banking_app.domain.commands import Answer, ClaimCommandId, CommandIdAnswer
from banking_app.domain.errors import MalformedCommand
from banking_app.domain.ledger import Ledger

T1 = "2024-05-01T09:00:01.000Z"
T2 = "2024-05-01T09:00:02.000Z"

DEPOSIT_A = Deposit(command_id="c1", account_id="acc-a", amount=10)
DEPOSIT_B = Deposit(command_id="c1", account_id="acc-b", amount=10)


def test_the_fingerprint_is_the_content_whatever_its_spelling() -> None:
    wire = {"type": "DEPOSIT", "command_id": "c1", "account_id": "acc-a", "amount": 10}
    reordered = {"amount": 10, "account_id": "acc-a", "command_id": "c1", "type": "DEPOSIT"}
    assert fingerprint(parse_command(wire)) == fingerprint(parse_command(reordered))
    assert fingerprint(parse_command({**wire, "note": "ignored"})) == fingerprint(DEPOSIT_A)
    # Another account, amount or type is other content.
    assert fingerprint(DEPOSIT_B) != fingerprint(DEPOSIT_A)
    assert fingerprint(Deposit(command_id="c1", account_id="acc-a", amount=11)) != fingerprint(
        DEPOSIT_A
    )
    assert fingerprint(Withdraw(command_id="c1", account_id="acc-a", amount=10)) != fingerprint(
        DEPOSIT_A
    )
    assert len(fingerprint(DEPOSIT_A)) == 32


def test_the_first_claim_stands_and_every_later_one_is_answered_against_it() -> None:
    first = Claim(fingerprint(DEPOSIT_A), "acc-a", (7, 0))

    stored, said = answer(None, first)
    assert (stored, said) == (first, Answer.CLAIMED)

    # The same claim again (a redelivery): the same answer, the row unchanged.
    assert answer(stored, first) == (first, Answer.CLAIMED)

    # The same command at a later position of its account (a producer retry).
    copy = Claim(fingerprint(DEPOSIT_A), "acc-a", (9, 0))
    assert answer(stored, copy) == (first, Answer.DUPLICATE)

    # The same id for another account: refused, and the first claim is kept.
    other = Claim(fingerprint(DEPOSIT_B), "acc-b", (7, 0))
    assert answer(stored, other) == (first, Answer.REUSED)

    # Another amount on the same account, or another type: refused too.
    more = Deposit(command_id="c1", account_id="acc-a", amount=11)
    assert answer(stored, Claim(fingerprint(more), "acc-a", (12, 0))) == (first, Answer.REUSED)
    transfer = TransferMoney(command_id="c1", account_id="acc-a", to_account_id="b", amount=10)
    assert answer(stored, Claim(fingerprint(transfer), "acc-a", (13, 0)))[1] is Answer.REUSED


claims = st.builds(
    Claim,
    st.sampled_from(["a" * 32, "b" * 32, "c" * 32]),
    st.sampled_from(["acc-a", "acc-b"]),
    st.tuples(st.integers(0, 3), st.integers(0, 1)),
)


@given(st.lists(claims, min_size=1, max_size=12))
def test_exactly_one_claimant_is_ever_claimed_and_answers_never_change(
    sequence: list[Claim],
) -> None:
    """Whatever claims arrive, and however often: the first is the one claimant, and a
    claim asked again gets the answer it got the first time."""
    stored: Claim | None = None
    said: dict[Claim, Answer] = {}
    for claim in sequence:
        stored, reply = answer(stored, claim)
        assert stored == sequence[0]
        assert said.setdefault(claim, reply) is reply
        claimed = reply is Answer.CLAIMED
        assert claimed == (claim == sequence[0])
        if not claimed:
            same = claim.fingerprint == sequence[0].fingerprint
            assert reply is (Answer.DUPLICATE if same else Answer.REUSED)


def test_a_reused_id_is_refused_under_an_event_id_of_its_own() -> None:
    fp = fingerprint(DEPOSIT_B)
    refused = reused_rejection(DEPOSIT_B, fp, (4, 0), T1)
    assert (refused.reason, refused.command_id, refused.account_id) == (
        "COMMAND_ID_REUSED",
        "c1",
        "acc-b",
    )
    assert refused.seq is None
    assert refused.command == DEPOSIT_B.to_dict()
    first_use = ev.event_id_for("c1")
    assert refused.event_id not in {first_use, ev.event_id_for("c1/credit")}
    assert refused.event_id == ev.event_id_for(reused_use_id(DEPOSIT_B, fp, (4, 0)))
    # Reprocessed, it is the same event; the same reuse at another place is another.
    assert reused_rejection(DEPOSIT_B, fp, (4, 0), T1) == refused
    assert reused_rejection(DEPOSIT_B, fp, (5, 0), T2).event_id != refused.event_id
    # The read model files it under the use, so the bare id keeps the first use.
    assert ev.outcome_key(refused) == f"c1/reused/{refused.event_id}"
    assert ev.outcome_key(refused) != "c1"


def test_the_ledger_counts_a_refused_reuse_as_its_own_outcome() -> None:
    deposited = ev.MoneyDeposited(
        event_id=ev.event_id_for("c1"),
        command_id="c1",
        account_id="acc-a",
        occurred_at=T1,
        seq=2,
        amount=10,
        balance=10,
        currency="EUR",
    )
    created = ev.AccountCreated(
        event_id=ev.event_id_for("open"),
        command_id="open",
        account_id="acc-a",
        occurred_at=T1,
        seq=1,
        owner="A",
        currency="EUR",
        overdraft_limit=0,
    )
    ledger = Ledger()
    for event in (
        created,
        deposited,
        reused_rejection(DEPOSIT_B, fingerprint(DEPOSIT_B), (4, 0), T2),
        reused_rejection(DEPOSIT_B, fingerprint(DEPOSIT_B), (6, 0), T2),
    ):
        assert ledger.apply(event)
    assert ledger.check() == []
    assert ledger.commands_with_outcome == 4


def test_claim_legs_are_read_as_strictly_as_they_are_written() -> None:
    fp = fingerprint(DEPOSIT_A)
    claim = ClaimCommandId(command_id="c1", account_id="acc-a", fingerprint=fp, offset=7, index=1)
    assert parse_command(claim.to_dict()) == claim
    assert claim.route_key == "c1" and DEPOSIT_A.route_key == "acc-a"
    reply = CommandIdAnswer(
        command_id="c1", account_id="acc-a", fingerprint=fp, offset=7, index=1, answer="REUSED"
    )
    assert parse_command(reply.to_dict()) == reply
    assert reply.route_key == "acc-a"
    for bad in (
        {**claim.to_dict(), "fingerprint": "XYZ"},
        {**claim.to_dict(), "offset": -1},
        {**claim.to_dict(), "index": 1.0},
        {**claim.to_dict(), "expected_version": 0},
        {**reply.to_dict(), "answer": "MAYBE"},
    ):
        try:
            parse_command(bad)
        except MalformedCommand as error:
            assert error.detail.startswith("saga leg ")
        else:
            raise AssertionError(f"{bad} was read")
    # A client may not send them, as it may not send a saga leg.
    try:
        parse_command(claim.to_dict(), allow_internal=False)
    except MalformedCommand:
        pass
    else:
        raise AssertionError("a claim leg was read as a client's command")
