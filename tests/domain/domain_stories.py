"""What the domain's stories (``test_decide``, ``test_legs``) share: the clock, the
fold of a decision, and the commands that open an account.

Imported by its name, as tests/http imports ``api_client``: pytest puts this folder on
``sys.path`` for the tests in it.
"""

from __future__ import annotations

from banking_app.domain import (
    Account,
    Command,
    CreateAccount,
    Decision,
    Deposit,
    evolve,
    parse_command,
)

T0 = "2024-05-01T09:00:00.000Z"
T1 = "2024-05-01T09:00:01.000Z"
T2 = "2024-05-01T09:00:02.000Z"
T3 = "2024-05-01T09:00:03.000Z"
T4 = "2024-05-01T09:00:04.000Z"
T5 = "2024-05-01T09:00:05.000Z"


def apply(state: Account | None, decision: Decision) -> Account | None:
    for event in decision.events:
        state = evolve(state, event)
    return state


def folded(state: Account | None, decision: Decision) -> Account:
    """The account after ``decision``'s events, which must leave one; and every leg the
    decision sends is something the commands topic can carry and read back."""
    after = apply(state, decision)
    assert after is not None
    for leg in decision.legs:
        assert parse_command(leg.to_dict()) == leg
    return after


def opening(account_id: str, currency: str, overdraft_limit: int, balance: int) -> list[Command]:
    """The commands that open ``account_id``: its create, then a deposit of ``balance``
    unless that is 0."""
    create = CreateAccount(
        command_id=f"create-{account_id}",
        account_id=account_id,
        owner="Owner",
        currency=currency,
        overdraft_limit=overdraft_limit,
    )
    if not balance:
        return [create]
    return [create, Deposit(f"fund-{account_id}", account_id, None, balance)]
