"""Daily spending limits (``banking_app.domain.limits``): a story, then the invariants.

The story follows one account through two days, with the state after every step. The
properties then send any mix of withdrawals, transfers and limit changes, stamped with
any of a few days in any order, and check what a bank promises: no day's withdrawals
(or transfers) pass the limit in force, a refusal is only ever for a real excess, and an
account without limits is never refused for one.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain_stories import apply
from hypothesis import given
from hypothesis import strategies as st

from banking_app.domain import (
    Account,
    Command,
    CreateAccount,
    Deposit,
    Reason,
    SetLimits,
    TransferMoney,
    Withdraw,
    decide,
)
from banking_app.domain import events as ev

DAY1 = "2024-05-01T09:00:00.000Z"
DAY1_LATE = "2024-05-01T23:59:59.999Z"
DAY2 = "2024-05-02T00:00:00.000Z"
DAY2_LATER = "2024-05-02T08:00:00.000Z"


def step(state: Account | None, command: Command, at: str) -> tuple[Account, ev.Event]:
    decision = decide(state, command, at)
    (event,) = decision.events
    after = apply(state, decision)
    assert after is not None
    return after, event


def reason_of(event: ev.Event) -> str | None:
    return event.reason if isinstance(event, ev.CommandRejected) else None


def test_a_day_of_withdrawals_and_transfers_within_their_limits() -> None:
    account, opened = step(
        None,
        CreateAccount("open", "acc", owner="Ann", currency="EUR", daily_withdrawal_limit=100),
        DAY1,
    )
    assert isinstance(opened, ev.AccountCreated)
    assert (opened.daily_withdrawal_limit, opened.daily_transfer_limit) == (100, None)
    assert (account.daily_withdrawal_limit, account.daily_transfer_limit) == (100, None)
    assert (account.spending_day, account.withdrawn_today) == ("", 0)

    account, _ = step(account, Deposit("fund", "acc", amount=10_000), DAY1)
    account, _ = step(account, Withdraw("w1", "acc", amount=60), DAY1)
    assert (account.spending_day, account.withdrawn_today, account.balance) == (
        "2024-05-01",
        60,
        9_940,
    )

    # 60 + 41 is past 100: refused, and nothing changes.
    before = account
    account, refused = step(account, Withdraw("w2", "acc", amount=41), DAY1_LATE)
    assert reason_of(refused) == Reason.LIMIT_EXCEEDED
    assert "2024-05-01" in refused.detail and "100" in refused.detail
    assert account == before

    # Exactly the limit is allowed.
    account, _ = step(account, Withdraw("w3", "acc", amount=40), DAY1_LATE)
    assert account.withdrawn_today == 100

    # Transfers have no limit yet, and count apart from withdrawals.
    account, debited = step(
        account, TransferMoney("t1", "acc", to_account_id="bob", amount=500), DAY1
    )
    assert isinstance(debited, ev.TransferDebited)
    assert (account.withdrawn_today, account.transferred_today) == (100, 500)

    # A new UTC day starts from nothing.
    account, _ = step(account, Withdraw("w4", "acc", amount=100), DAY2)
    assert (account.spending_day, account.withdrawn_today, account.transferred_today) == (
        "2024-05-02",
        100,
        0,
    )

    # A command stamped with the day before counts against the latest day: refused.
    account, refused = step(account, Withdraw("w5", "acc", amount=1), DAY1_LATE)
    assert reason_of(refused) == Reason.LIMIT_EXCEEDED

    # SET_LIMITS replaces both: a limit on transfers now, none on withdrawals.
    account, limits = step(account, SetLimits("l1", "acc", daily_transfer_limit=50), DAY2_LATER)
    assert isinstance(limits, ev.LimitsSet)
    assert limits.seq == account.version
    assert (account.daily_withdrawal_limit, account.daily_transfer_limit) == (None, 50)
    account, _ = step(account, Withdraw("w6", "acc", amount=5_000), DAY2_LATER)
    account, refused = step(
        account, TransferMoney("t2", "acc", to_account_id="bob", amount=51), DAY2_LATER
    )
    assert reason_of(refused) == Reason.LIMIT_EXCEEDED
    assert account.transferred_today == 0


def test_a_limit_is_checked_after_the_funds() -> None:
    """An account short of money hears INSUFFICIENT_FUNDS, whatever its limit."""
    account, _ = step(
        None,
        CreateAccount("open", "acc", owner="Ann", currency="EUR", daily_withdrawal_limit=1),
        DAY1,
    )
    _, refused = step(account, Withdraw("w", "acc", amount=5), DAY1)
    assert reason_of(refused) == Reason.INSUFFICIENT_FUNDS


def test_limits_round_trip_through_the_wire_and_are_left_out_when_none() -> None:
    created = ev.AccountCreated("e", "c", "acc", DAY1, 1, "Ann", "EUR", 0)
    assert "daily_withdrawal_limit" not in created.to_dict()
    assert ev.event_from_dict(created.to_dict()) == created
    limited = ev.LimitsSet("e2", "c2", "acc", DAY1, 2, daily_withdrawal_limit=0)
    assert limited.to_dict()["daily_withdrawal_limit"] == 0
    assert "daily_transfer_limit" not in limited.to_dict()
    assert ev.event_from_dict(limited.to_dict()) == limited


# --------------------------------------------------------------------- the invariants

DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]
LIMITS = st.one_of(st.none(), st.integers(min_value=0, max_value=300))


@dataclass(frozen=True)
class Spend:
    withdrawal: bool
    amount: int
    day: int
    hour: int


@dataclass(frozen=True)
class Limits:
    withdrawal: int | None
    transfer: int | None
    day: int


ACTIONS = st.lists(
    st.one_of(
        st.builds(
            Spend,
            withdrawal=st.booleans(),
            amount=st.integers(min_value=1, max_value=200),
            day=st.integers(0, len(DAYS) - 1),
            hour=st.integers(0, 23),
        ),
        st.builds(Limits, withdrawal=LIMITS, transfer=LIMITS, day=st.integers(0, len(DAYS) - 1)),
    ),
    max_size=40,
)


def run(withdrawal: int | None, transfer: int | None, actions: list[Spend | Limits]) -> None:
    """Decide ``actions`` on a well-funded account; check each outcome against a model
    that knows only the rule: what counts against a day is what left the account on it
    or, stamped earlier, after it."""
    create = CreateAccount(
        "open",
        "acc",
        owner="Ann",
        currency="EUR",
        daily_withdrawal_limit=withdrawal,
        daily_transfer_limit=transfer,
    )
    account, _ = step(None, create, f"{DAYS[0]}T00:00:00.000Z")
    account, _ = step(account, Deposit("fund", "acc", amount=10**9), f"{DAYS[0]}T00:00:00.000Z")
    limit = {True: withdrawal, False: transfer}
    latest = ""  # the latest day anything was counted against
    counted: dict[tuple[str, bool], int] = {}
    for index, action in enumerate(actions):
        at = f"{DAYS[action.day]}T{getattr(action, 'hour', 12):02d}:00:00.000Z"
        if isinstance(action, Limits):
            account, _ = step(
                account,
                SetLimits(
                    f"l{index}",
                    "acc",
                    daily_withdrawal_limit=action.withdrawal,
                    daily_transfer_limit=action.transfer,
                ),
                at,
            )
            limit = {True: action.withdrawal, False: action.transfer}
            continue
        command: Command = (
            Withdraw(f"s{index}", "acc", amount=action.amount)
            if action.withdrawal
            else TransferMoney(f"s{index}", "acc", to_account_id="bob", amount=action.amount)
        )
        day = max(DAYS[action.day], latest)
        so_far = counted.get((day, action.withdrawal), 0)
        allowed = limit[action.withdrawal]
        account, event = step(account, command, at)
        if allowed is not None and so_far + action.amount > allowed:
            assert reason_of(event) == Reason.LIMIT_EXCEEDED, (action, so_far, allowed)
            continue
        assert reason_of(event) is None, (action, so_far, allowed, event)
        latest = day
        counted[(day, action.withdrawal)] = so_far + action.amount
        assert account.spending_day == day
        spent_now = account.withdrawn_today if action.withdrawal else account.transferred_today
        assert spent_now == counted[(day, action.withdrawal)]
        if allowed is not None:
            assert spent_now <= allowed


@given(withdrawal=LIMITS, transfer=LIMITS, actions=ACTIONS)
def test_no_day_passes_its_limit_and_only_an_excess_is_refused(
    withdrawal: int | None, transfer: int | None, actions: list[Spend | Limits]
) -> None:
    run(withdrawal, transfer, actions)


@given(
    actions=st.lists(
        st.builds(
            Spend, st.booleans(), st.integers(1, 10**6), st.integers(0, 2), st.integers(0, 23)
        )
    )
)
def test_an_account_without_limits_is_never_refused_for_one(actions: list[Spend]) -> None:
    run(None, None, actions)
