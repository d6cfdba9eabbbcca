"""The projection agents under Faust's agent harness (memory tables, no broker)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from banking_app.domain import command_ids, decide, evolve
from banking_app.domain import commands as cmd
from banking_app.query_service import projections
from banking_app.query_service.projections import (
    account_views_table,
    command_outcomes_table,
    project_accounts,
    project_outcomes,
)
from banking_app.runtime import codec, metrics
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import RecordingOutbox
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import outcome_events_topic, partition_for


@contextlib.asynccontextmanager
async def running(agent: Any, table: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A projection agent under the harness, its outbox recorded, its table emptied after."""
    assert str(app.conf.store).startswith("memory:"), "tests/agents/conftest.py sets it"
    app.finalize()
    monkeypatch.setattr(projections, "outbox", RecordingOutbox())
    try:
        async with agent.test_context() as harnessed:
            yield harnessed
    finally:
        table.data.clear()


@pytest.fixture()
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    async with running(project_accounts, account_views_table, monkeypatch) as agent:
        yield agent


@pytest.fixture()
async def outcomes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    async with running(project_outcomes, command_outcomes_table, monkeypatch) as agent:
        yield agent


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


async def test_a_record_that_is_not_one_event_object_is_skipped_and_the_next_applied(
    harness: Any,
) -> None:
    (opened,) = account_events(
        cmd.CreateAccount(command_id="n1", account_id="odd", owner="Olga", currency="EUR")
    )
    key = codec.key("odd")
    for value in (b'"hello"', b"42", b"null", b"not json", codec.dumps([opened])):
        await harness.put(value, key=key, partition=partition_for(key, 8))
    assert get_json(account_views_table, "odd") is None  # not even the event in an array

    await project(harness, opened)

    view = get_json(account_views_table, "odd")
    assert (view["owner"], view["version"]) == ("Olga", 1)
    forwarded = projections.outbox.on(outcome_events_topic)
    assert [codec.loads(record.value) for record in forwarded] == [[opened]]


async def test_outcomes_fold_bundles_and_single_events_skipping_what_is_not_an_event(
    outcomes: Any,
) -> None:
    opened, deposited = account_events(
        cmd.CreateAccount(command_id="o1", account_id="out", owner="Otto", currency="EUR"),
        cmd.Deposit(command_id="o2", account_id="out", amount=5),
    )
    bundle = b"[" + b",".join([codec.dumps(opened), b'"junk"', b"7"]) + b"]"
    await outcomes.put(bundle, key=b"", partition=0)
    await outcomes.put(codec.dumps(deposited), key=b"", partition=0)  # an earlier release's

    first, second = get_json(command_outcomes_table, "o1"), get_json(command_outcomes_table, "o2")
    assert (first["status"], [e["type"] for e in first["events"]]) == (
        "accepted",
        ["AccountCreated"],
    )
    assert (second["status"], [e["type"] for e in second["events"]]) == (
        "accepted",
        ["MoneyDeposited"],
    )


async def test_a_refused_reuse_of_an_id_is_filed_apart_and_the_first_use_stands(
    harness: Any, outcomes: Any
) -> None:
    opened, deposited = account_events(
        cmd.CreateAccount(command_id="u0", account_id="use", owner="Una", currency="EUR"),
        cmd.Deposit(command_id="u1", account_id="use", amount=5),
    )
    other = cmd.Deposit(command_id="u1", account_id="elsewhere", amount=5)
    refused = command_ids.reused_rejection(
        other, command_ids.fingerprint(other), (9, 0), "2026-01-01T00:00:09.000Z"
    ).to_dict()
    for event in (opened, deposited, refused):
        await project(harness, event)
    # The refusal goes to the partition of its own use, not of the bare id.
    forwarded = projections.outbox.on(outcome_events_topic)
    use = f"u1/reused/{refused['event_id']}"
    assert forwarded[-1].partition == partition_for(codec.key(use), 8)
    for record in forwarded:
        await outcomes.put(record.value, key=b"", partition=record.partition)

    first = get_json(command_outcomes_table, "u1")
    assert (first["status"], [e["type"] for e in first["events"]]) == (
        "accepted",
        ["MoneyDeposited"],
    )
    apart = get_json(command_outcomes_table, use)
    assert (apart["status"], apart["reason"]) == ("rejected", "COMMAND_ID_REUSED")
    assert get_json(account_views_table, "use")["balance"] == 5
