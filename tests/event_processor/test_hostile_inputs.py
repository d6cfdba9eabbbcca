"""The command agent against a hostile producer, and when handling fails.

Anyone who can write ``commands`` may send any key, value and timestamp. Each test
asserts the state after each step: what moved, what was dead-lettered and why, and that
the inputs around the bad one still have their outcomes.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from banking_app.domain import parse_command
from banking_app.event_processor import agent as agents
from banking_app.event_processor import leg_seal
from banking_app.event_processor.agent import Handled
from banking_app.runtime import faults as faults_module
from banking_app.runtime import retries
from banking_app.runtime.outbox import Record, RecordingOutbox
from banking_app.runtime.settings import settings
from banking_app.runtime.topics import commands_topic, dead_letters_topic, partition_for
from support.agent_harness import (
    balance,
    bundle,
    credit,
    deliver_claims,
    events,
    last_outcomes,
    open_accounts,
    send,
    send_take,
)


def letters(agent: Any) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in agent.outbox.on(dead_letters_topic)]


def deposit(command_id: str, account_id: str, amount: int) -> dict[str, Any]:
    return {"type": "DEPOSIT", "command_id": command_id, "account_id": account_id, "amount": amount}


def unsealed(leg: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in leg.items() if key != "seal"}


REFUND = {
    "type": "TRANSFER_REFUND",
    "command_id": "forged-refund",
    "account_id": "mallory",
    "to_account_id": "victim",
    "amount": 1_000_000,
    "reason": "ACCOUNT_NOT_FOUND",
}


async def test_a_forged_refund_moves_no_money(harness: Any) -> None:
    await open_accounts(harness, "mallory")
    assert await send(harness, REFUND) is Handled.DEAD_LETTERED
    assert balance("mallory") == 0
    [letter] = letters(harness)
    assert letter["reason"] == "FORGED_LEG"
    assert "seal" in letter["detail"]
    # No event at all: not even a rejection under the command id it names.
    assert [e["type"] for e in events(harness)] == ["AccountCreated"]


async def test_a_leg_with_a_seal_made_for_other_fields_moves_no_money(harness: Any) -> None:
    """A real seal copied onto a changed leg: the seal covers every field."""
    await open_accounts(harness, "mallory")
    genuine = credit("t", "mallory", 5)
    raised = {**genuine, "amount": 5_000_000}
    assert await send(harness, raised) is Handled.DEAD_LETTERED
    assert await send(harness, {**genuine, "seal": "A" * 22}) is Handled.DEAD_LETTERED
    assert balance("mallory") == 0
    assert [e["reason"] for e in letters(harness)] == ["FORGED_LEG", "FORGED_LEG"]


async def test_forged_legs_in_a_bundle_move_no_money_and_the_sealed_one_applies(
    harness: Any,
) -> None:
    await open_accounts(harness, "mallory")
    own = partition_for(b"mallory", 8)
    settle = {
        "type": "TRANSFER_SETTLE",
        "command_id": "forged-settle",
        "account_id": "mallory",
        "to_account_id": "victim",
        "amount": 10,
    }
    negative = unsealed(credit("neg", "mallory", 4000)) | {"amount": -4000}
    value = bundle(REFUND, settle, negative, credit("real", "mallory", 7))
    await harness.put(value, key=b"", partition=own)
    assert last_outcomes(harness) == [
        Handled.DEAD_LETTERED,
        Handled.DEAD_LETTERED,
        Handled.DEAD_LETTERED,
        Handled.APPLIED,
    ]
    assert balance("mallory") == 7
    assert [e["reason"] for e in letters(harness)] == [
        "FORGED_LEG",
        "FORGED_LEG",
        "MALFORMED_COMMAND",  # a negative amount fails before any seal is looked at
    ]
    assert [e["type"] for e in events(harness)] == ["AccountCreated", "TransferCredited"]


async def test_a_leg_is_sealed_over_its_fields_so_a_copy_rekeyed_keeps_its_seal() -> None:
    leg = parse_command(unsealed(credit("t", "dst", 5)))
    key = settings.leg_key_bytes()
    wire = leg_seal.sealed(leg, key)
    again = parse_command(orjson.loads(orjson.dumps(wire)))
    leg_seal.check(again, wire, key)  # no error
    with pytest.raises(leg_seal.ForgedLeg):
        leg_seal.check(again, wire, b"another key of the same length, or any")


async def test_a_poison_bundle_timestamp_is_dead_lettered_and_its_neighbours_applied(
    harness: Any,
) -> None:
    """A leg timestamp in year 11476 once crashed the agent and lost its whole take."""
    await open_accounts(harness, "ann")
    poison = orjson.dumps([{"timestamp": 300_000_000_000_000, "command": credit("p", "ann", 1)}])
    key = b"ann"
    own = partition_for(key, 8)
    async with harness.new_value_processed:
        for value, record_key in (
            (orjson.dumps(deposit("d1", "ann", 10)), key),
            (poison, b""),
            (orjson.dumps(deposit("d2", "ann", 20)), key),
        ):
            await harness.put(value, key=record_key, partition=own, wait=False)
        await harness.new_value_processed.wait()
    await deliver_claims(harness)
    assert balance("ann") == 30
    [letter] = letters(harness)
    assert letter["reason"] == "MALFORMED_COMMAND"
    assert letter["timestamp"] is not None  # the record's own, not the poison's


async def test_a_record_timestamp_no_date_can_show_is_malformed_not_a_crash(
    harness: Any,
) -> None:
    await open_accounts(harness, "bea")
    own = partition_for(b"bea", 8)
    far = 300_000_000_000.0  # seconds: year 11476
    await harness.put(
        orjson.dumps(deposit("far", "bea", 5)), key=b"bea", partition=own, timestamp=far
    )
    assert last_outcomes(harness) == [Handled.DEAD_LETTERED]
    assert balance("bea") == 0
    [letter] = letters(harness)
    assert (letter["reason"], letter["timestamp"]) == ("MALFORMED_COMMAND", None)
    assert await send(harness, deposit("near", "bea", 5)) is Handled.APPLIED
    assert balance("bea") == 5


@pytest.fixture()
def inject(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_faults(spec: str) -> None:
        monkeypatch.setattr(faults_module.faults, "faults", faults_module.parse(spec))
        monkeypatch.setattr(faults_module.faults, "active", True)
        faults_module.faults.runs.clear()

    return set_faults


async def test_an_input_that_fails_every_time_is_set_aside_and_the_take_goes_on(
    harness: Any, inject: Any
) -> None:
    await open_accounts(harness, "cy")
    inject("decide:bad")
    await send_take(
        harness, "cy", [deposit("a", "cy", 1), deposit("bad", "cy", 2), deposit("c", "cy", 4)]
    )
    assert balance("cy") == 5
    [letter] = letters(harness)
    assert letter["reason"] == "PROCESSING_FAILED"
    assert "injected fault at decide" in letter["detail"]
    assert orjson.loads(letter["value"])["command_id"] == "bad"
    # Not recorded as applied: a copy sent once the fault is gone is applied.
    inject("")
    assert await send(harness, deposit("bad", "cy", 2)) is Handled.APPLIED
    assert balance("cy") == 7


async def test_an_input_that_fails_once_is_decided_on_its_second_try(
    harness: Any, inject: Any
) -> None:
    await open_accounts(harness, "di")
    inject("decide@1,decode@1")
    assert await send(harness, deposit("once", "di", 3)) is Handled.APPLIED
    assert balance("di") == 3
    assert letters(harness) == []


class FlakyOutbox(RecordingOutbox):
    """Records what is published, but fails the first ``failures`` publishes half-way."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, records: list[Record], fault: str | None = None) -> None:
        if self.failures:
            self.failures -= 1
            await super().publish(records[: len(records) // 2])
            raise ConnectionError("the broker went away half-way")
        await super().publish(records)


async def test_a_take_whose_publish_fails_half_way_is_handled_again_and_applied_once(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await open_accounts(harness, "ed", "flo")
    flaky = FlakyOutbox(failures=2)
    monkeypatch.setattr(agents.processor, "outbox", flaky)
    monkeypatch.setattr(retries, "settings", replace(settings, take_retry_backoff=0.01))
    transfer = {
        "type": "TRANSFER_MONEY",
        "command_id": "tr",
        "account_id": "ed",
        "to_account_id": "flo",
        "amount": 3,
    }
    await send_take(harness, "ed", [deposit("e1", "ed", 10), transfer, deposit("e2", "ed", 1)])
    assert balance("ed") == 8
    published = [orjson.loads(r.value) for r in flaky.records if r.topic is not commands_topic]
    ids = {(e["event_id"], e["seq"]) for e in published if "seq" in e}
    # The third attempt published everything; the failed ones published prefixes of
    # the same records, which carry the same event ids (readers dedupe by them).
    assert sorted(seq for _, seq in ids) == [2, 3, 4]
    assert len(flaky.on(commands_topic)) >= 1  # the credit leg, sealed


async def test_a_take_that_fails_every_attempt_stops_the_worker_unacknowledged() -> None:
    failures: list[int] = []
    stopped: list[BaseException] = []

    async def handle() -> None:
        failures.append(1)
        raise ConnectionError("down")

    async def stop_worker(reason: BaseException) -> None:
        stopped.append(reason)

    with pytest.raises(retries.TakeAbandoned):
        await retries.until_handled(
            handle,
            agent="test",
            records=3,
            discard=lambda: failures.append(0),
            stop_worker=stop_worker,
            attempts=3,
        )
    # Three attempts, each failure's staged writes dropped, and one stop.
    assert failures == [1, 0, 1, 0, 1, 0]
    assert len(stopped) == 1


hostile_values = st.one_of(
    st.binary(max_size=64),
    st.from_type(type(None)),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),  # NaN, 2**70: beyond what orjson reads
    st.fixed_dictionaries(
        {
            # No public command that could legitimately move gil's money.
            "type": st.sampled_from(
                [
                    "TRANSFER_CREDIT",
                    "TRANSFER_REFUND",
                    "TRANSFER_SETTLE",
                    "CLAIM_COMMAND_ID",
                    "COMMAND_ID_ANSWER",
                    "CLOSE_ACCOUNT",
                    "X",
                ]
            ),
            "command_id": st.text(max_size=10),
            "account_id": st.sampled_from(["gil", "", "x" * 70]),
            "amount": st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=3),
            "to_account_id": st.sampled_from(["gil", "hal"]),
            "from_account_id": st.sampled_from(["gil", "hal"]),
            "currency": st.sampled_from(["EUR", "eur", ""]),
            "reason": st.sampled_from(["ACCOUNT_NOT_FOUND", "x"]),
            "seal": st.text(max_size=24),
        }
    ).map(lambda d: json.dumps(d).encode()),
)
hostile_records = st.tuples(
    hostile_values,
    st.sampled_from([None, b"", b"gil", b"\xff\xfe", b"hal"]),
    st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(2**62), 2**62)),
)


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile=st.lists(hostile_records, min_size=1, max_size=4))
async def test_any_record_leaves_the_agent_running_and_its_neighbours_applied(
    harness: Any, hostile: list[tuple[bytes, bytes | None, Any]]
) -> None:
    """Whatever one record holds, the deposits around it are applied, each once."""
    own = partition_for(b"gil", 8)
    if not hasattr(harness, "opened"):
        await open_accounts(harness, "gil")
        harness.opened = 0
    before = balance("gil")
    harness.opened += 1
    run = harness.opened
    for index, (value, key, timestamp) in enumerate(hostile):
        await harness.put(
            orjson.dumps(deposit(f"ok-{run}-{index}", "gil", 1)),
            key=b"gil",
            partition=own,
            wait=False,
        )
        stamp = float(timestamp) if timestamp is not None else None
        await harness.put(value, key=key, partition=own, timestamp=stamp, wait=False)
    await harness.put(
        orjson.dumps(deposit(f"ok-{run}-end", "gil", 1)), key=b"gil", partition=own, wait=False
    )
    # One partition, in order: once the last deposit shows, every record before it was
    # handled. A hostile record that took money would keep the balance below this.
    deadline = time.monotonic() + 60
    while balance("gil") - before < len(hostile) + 1:
        assert time.monotonic() < deadline, "the deposits were not all applied"
        await asyncio.sleep(0.01)
        await deliver_claims(harness)
    # Every good deposit moved exactly its cent, and no hostile record moved any: a
    # forged leg has no seal, and closing an account with money in it is refused.
    assert balance("gil") - before == len(hostile) + 1
