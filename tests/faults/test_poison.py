"""Poison input on ``commands``, interleaved with good commands.

Records that are not commands (not JSON, truncated JSON, an unknown type, mistyped
fields, a 900 KB value, no key, binary garbage, JSON ``null``, a JSON number, a
tombstone) must each end up on ``commands-dlq`` with the reason, where they came; and
with a ``CommandRejected`` (``MALFORMED_COMMAND``) when a command id and an account can
be read from them (the id is claimed bank-wide first, docs/command-ids.md); the good
commands around them must each be applied exactly once; and the worker must never stop.

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17).
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from banking_app.runtime.codec import DEAD_LETTER_VALUE_BYTES
from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Client, Worker, command
from support.load import (
    EventLog,
    Producer,
    Workload,
    check_views,
    logs,
    verify,
)

pytestmark = pytest.mark.kafka

GOOD = 50


@dataclass(frozen=True)
class Poison:
    label: str
    key: bytes | None
    value: bytes | None
    reason: str  # on commands-dlq
    command_id: str | None = None  # when one can be read
    #: With a command id, a valid account id makes a MALFORMED_COMMAND refusal too, once
    #: the id is claimed; with none, the dead letter (where the record came) is all.
    account_id: str | None = None

    @property
    def refused(self) -> bool:
        return bool(self.command_id and self.account_id)

    def dlq_key(self) -> str | None:
        return self.key.decode() if self.key is not None else None

    def dlq_value(self) -> str | None:
        """The ``value`` the dead-letter entry shows: text, or base64 when not UTF-8, of at
        most the first DEAD_LETTER_VALUE_BYTES bytes."""
        if self.value is None:
            return None
        shown = self.value[:DEAD_LETTER_VALUE_BYTES]
        try:
            return shown.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(shown).decode()


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def poisons(account: str) -> list[Poison]:
    def key(label: str) -> bytes:
        return f"poison-{label}".encode()

    deposit = command("DEPOSIT", "p-types", account, amount="100")
    huge_owner = command(
        "CREATE_ACCOUNT", "p-huge", "p-huge-account", owner="o" * 900_000, currency="EUR"
    )
    return [
        Poison("not-json", key("not-json"), b"this is not JSON at all", "INVALID_JSON"),
        Poison(
            "truncated",
            key("truncated"),
            dumps(command("DEPOSIT", "p-truncated", account, amount=5))[:-9],
            "INVALID_JSON",
        ),
        Poison(
            "unknown-type",
            key("unknown-type"),
            dumps(command("STEAL_MONEY", "p-unknown", account, amount=5)),
            "MALFORMED_COMMAND",
            "p-unknown",
            account,
        ),
        Poison(
            "amount-string",
            key("amount-string"),
            dumps(deposit),
            "MALFORMED_COMMAND",
            "p-types",
            account,
        ),
        Poison(
            "amount-float",
            key("amount-float"),
            dumps(command("WITHDRAW", "p-float", account, amount=10.5)),
            "MALFORMED_COMMAND",
            "p-float",
            account,
        ),
        Poison(
            "account-number",
            key("account-number"),
            dumps({"type": "DEPOSIT", "command_id": "p-acct", "account_id": 12345, "amount": 1}),
            "MALFORMED_COMMAND",
            "p-acct",
        ),
        Poison("900kb-text", key("900kb-text"), b"x" * 900_000, "INVALID_JSON"),
        Poison(
            "900kb-json",
            key("900kb-json"),
            dumps(huge_owner),
            "MALFORMED_COMMAND",
            "p-huge",
            "p-huge-account",
        ),
        Poison("no-key", None, b"no key and no JSON either", "INVALID_JSON"),
        Poison("binary", key("binary"), bytes(random.Random(7).randbytes(256)), "INVALID_JSON"),
        Poison("json-null", key("json-null"), b"null", "MALFORMED_COMMAND"),
        Poison("json-number", key("json-number"), b"42", "MALFORMED_COMMAND"),
        Poison("tombstone", key("tombstone"), None, "MALFORMED_COMMAND"),
    ]


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_poison_goes_to_the_dead_letter_topic_and_good_commands_apply_once(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    rng = random.Random(4242)
    work = Workload("poison", rng, accounts=6, duplicate_share=0.0)
    creations, deposits = work.opening()
    good = work.stream(GOOD)
    # A good command without a key: re-keyed by the worker, then applied once.
    unkeyed = work.deposit(work.account_ids[0], 77)
    bad = poisons(work.account_ids[1])

    # Interleave: every few good commands, one poison record.
    sends: list[tuple[bytes | None, bytes | None]] = []
    queue = list(bad)
    for n, cmd in enumerate(good):
        sends.append((cmd["account_id"].encode(), dumps(cmd)))
        if n % 4 == 3 and queue:
            poison = queue.pop(0)
            sends.append((poison.key, poison.value))
        if n == GOOD // 2:
            sends.append((None, dumps(unkeyed)))
    sends += [(poison.key, poison.value) for poison in queue]

    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        worker = Worker(broker, tmp_path / "worker")
        worker.directory.mkdir()
        try:
            await asyncio.to_thread(worker.start)
            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                for key, value in sends:
                    await producer.send(value, key=key)
                    await asyncio.sleep(0.01)

                rejected = {p.command_id for p in bad if p.refused}
                await log.quiesce(work.expected)
                await log.wait_until(
                    lambda: rejected <= set(log.outcomes), "every readable poison id rejected"
                )
                problems = log.outcome_problems(work.expected)
                problems += log.balance_problems(work.bank)
                for command_id in sorted(rejected):
                    outcomes = list(log.outcomes[command_id].values())
                    shapes = [(e["type"], e.get("reason")) for e in outcomes]
                    if shapes != [("CommandRejected", "MALFORMED_COMMAND")]:
                        problems.append(f"poison {command_id}: outcomes {shapes}")
                unexpected = set(log.outcomes) - set(work.expected) - rejected
                problems += [f"unexpected outcome for {c}" for c in sorted(unexpected)]
                assert not problems, "\n".join(problems) + logs(worker)

            async with Client(broker) as client:
                dead = await client.read(
                    "commands-dlq",
                    until=lambda found: len(found) >= len(bad),
                    timeout=90,
                )
            assert len(dead) == len(bad), [(d["key"], d["reason"]) for d in dead]
            for poison in bad:
                entries = [d for d in dead if d["value"] == poison.dlq_value()]
                assert len(entries) == 1, (poison.label, [(d["key"], d["reason"]) for d in dead])
                entry = entries[0]
                assert entry["key"] == poison.dlq_key(), (poison.label, entry["key"])
                assert entry["reason"] == poison.reason, (poison.label, entry["detail"])
                size = len(poison.value or b"")
                assert entry["value_bytes"] == size, poison.label
                assert entry["value_truncated"] == (size > DEAD_LETTER_VALUE_BYTES), poison.label
                assert entry["detail"], poison.label
                assert entry["topic"] == "commands"
                assert isinstance(entry["offset"], int) and isinstance(entry["partition"], int)

            assert worker.process is not None and worker.process.poll() is None, logs(worker)
            assert worker.health() == 200, logs(worker)
            await check_views(worker, work.bank)
            await verify(broker, tmp_path / "cli", worker)
        finally:
            worker.stop()


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_a_900_kb_binary_value_is_dead_lettered_and_processing_goes_on(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("big", random.Random(3), accounts=4, duplicate_share=0.0)
    creations, deposits = work.opening()
    later = [work.deposit(account, 10) for account in work.account_ids]
    garbage = random.Random(9).randbytes(900_000)  # not UTF-8: dead-lettered as base64

    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        worker = Worker(broker, tmp_path / "worker")
        worker.directory.mkdir()
        try:
            await asyncio.to_thread(worker.start)
            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                await producer.send(garbage, key=b"poison-binary-900kb")
                await producer.send_all(later)

                # Fail at once when the agent crashes, rather than after a long wait.
                deadline = time.monotonic() + 90
                while log.missing_outcomes(work.expected) or not log.settled():
                    text = worker.log_path.read_text(errors="replace")
                    assert "Crashed reason=" not in text, logs(worker)
                    assert time.monotonic() < deadline, logs(worker)
                    await log.poll()
                problems = log.outcome_problems(work.expected) + log.balance_problems(work.bank)
                assert not problems, "\n".join(problems) + logs(worker)

            async with Client(broker) as client:
                dead = await client.read("commands-dlq", until=lambda found: len(found) >= 1)
            assert [(d["key"], d["reason"]) for d in dead] == [
                ("poison-binary-900kb", "INVALID_JSON")
            ]
            assert worker.process is not None and worker.process.poll() is None
            assert worker.health() == 200
        finally:
            worker.stop()
