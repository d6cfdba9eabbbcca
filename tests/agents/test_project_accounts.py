"""The account projection under Faust's agent harness (memory tables, no broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from banking_app import codec, metrics, projections
from banking_app.app import app
from banking_app.domain import commands as cmd
from banking_app.domain import decide, evolve
from banking_app.outbox import RecordingOutbox
from banking_app.projections import account_views_table, project_accounts
from banking_app.tables import get_json
from banking_app.topics import partition_for


@pytest.fixture()
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    assert str(app.conf.store).startswith("memory:"), "tests/agents/conftest.py sets it"
    app.finalize()
    monkeypatch.setattr(projections, "outbox", RecordingOutbox())
    try:
        async with project_accounts.test_context() as agent:
            yield agent
    finally:
        account_views_table.data.clear()


def account_events(*commands: cmd.Command) -> list[dict[str, Any]]:
    """The events of a command sequence on one account, decided by the real domain."""
    state, produced = None, []
    for index, command in enumerate(commands):
        for event in decide(state, command, f"2026-01-01T00:00:0{index}.000Z").events:
            produced.append(event.to_dict())
            state = evolve(state, event)
    return produced


async def project(agent: Any, event: dict[str, Any]) -> None:
    key = codec.key(event["account_id"])
    await agent.put(codec.dumps(event), key=key, partition=partition_for(key, 8))


async def test_an_event_after_a_missing_one_leaves_the_view_as_it_was(harness: Any) -> None:
    opened, first, second, third = account_events(
        cmd.CreateAccount(command_id="p1", account_id="gap", owner="Gus", currency="EUR"),
        cmd.Deposit(command_id="p2", account_id="gap", amount=100),
        cmd.Deposit(command_id="p3", account_id="gap", amount=20),
        cmd.Deposit(command_id="p4", account_id="gap", amount=3),
    )
    await project(harness, opened)
    await project(harness, first)
    view = get_json(account_views_table, "gap")
    assert (view["balance"], view["version"]) == (100, 2)
    refused = metrics.projection_gaps_total._value.get()

    await project(harness, third)  # seq 4: seq 3 never arrived

    assert get_json(account_views_table, "gap") == view
    assert metrics.projection_gaps_total._value.get() == refused + 1

    await project(harness, second)
    await project(harness, third)
    view = get_json(account_views_table, "gap")
    assert (view["balance"], view["version"]) == (123, 4)
