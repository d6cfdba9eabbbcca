"""Saga legs forged by an independent Kafka client move no money.

The bank invites any Kafka client to write ``commands``, so anyone can put a
``TRANSFER_CREDIT``, ``TRANSFER_REFUND`` or ``TRANSFER_SETTLE`` there. A plain aiokafka
producer (none of the bank's code) sends, against a worker on Tansu (the session worker)
and on a single Apache Kafka node (a worker of this module's own; skipped without Java
17), with accounts opened and funded over HTTP:

(a) a refund of 1,000,000 that no debit sent; (b) a credit of -4,000 to an account
holding 5,000 with no overdraft; (c) a settlement that no debit sent; (d) the same three
inside a bundle record (empty key, on the account's partition); (e) a genuine sealed
credit leg, read from ``commands``, with its amount raised; (f) that genuine leg, seal
and all, under a new command id (a fresh credit, were seals not checked); (g) an exact
copy of the genuine leg (valid: a duplicate, ignored).

Each forgery is dead-lettered (``FORGED_LEG``, or ``MALFORMED_COMMAND`` for the negative
amount, which no leg can carry); balances, versions and ``in_flight`` do not move; no
event names a forged leg's command id, and the genuine transfer keeps exactly its own
events; a genuine transfer afterwards still works; and ``replay --verify`` is clean.

Would these catch a worker that did not check seals? (a) and (c) would then fail the
in-flight guard instead and be dead-lettered ``MALFORMED_COMMAND``, not ``FORGED_LEG``;
(e) would be taken for a copy of the genuine credit (same leg id) and ignored, with no
dead letter; (f) would credit 1,000 more to the account. Each fails an assertion here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import ConsumerRecord

from banking_app.runtime.topics import partition_for
from support.api import HTTP_TIMEOUT, Api, eventually, key, new_id, view_state
from support.brokers import BROKER_KINDS, broker_and_worker
from support.cluster import Client, Worker
from support.load import EventLog, Producer, inputs_of, logs, verify

pytestmark = pytest.mark.kafka

PARTITIONS = 8
Leg = dict[str, Any]


@pytest.fixture(scope="module", params=BROKER_KINDS)
def bank(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Worker]]:
    """The broker and the worker: on Tansu the session's, on Kafka the module's own."""
    with broker_and_worker(request.param, request, tmp_path_factory.mktemp("bank")) as pair:
        yield pair


@pytest.fixture()
async def api(bank: tuple[Any, Worker]) -> AsyncIterator[Api]:
    _, worker = bank
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT + 30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield Api(session, worker.url)


def find_leg(records: list[ConsumerRecord], command_id: str, kind: str) -> Leg | None:
    """The leg of ``kind`` for ``command_id`` among records of ``commands``, as sent."""
    for record in records:
        try:
            value = orjson.loads(record.value)
        except (orjson.JSONDecodeError, TypeError):
            continue
        for item in inputs_of(value):
            if item.get("command_id") == command_id and item.get("type") == kind:
                return item
    return None


async def transfer(api: Api, source: str, destination: str, amount: int) -> str:
    """A transfer over HTTP, waited for until settled; its command id."""
    body = {"from_account_id": source, "to_account_id": destination, "amount": amount}
    reply = await api.post("/transfers", body, idempotency_key=key())
    assert reply.status == 200, reply
    await eventually(
        lambda: api.account(source), lambda view: view["in_flight"] == 0, what="settled"
    )
    return str(reply.body["command_id"])


async def states(api: Api, *accounts: str) -> dict[str, tuple[int, int, str, int]]:
    return {account: view_state(await api.account(account)) for account in accounts}


async def test_forged_legs_from_an_independent_client_move_no_money(
    bank: tuple[Any, Worker], api: Api, tmp_path: Path
) -> None:
    broker, worker = bank
    uid = uuid.uuid4().hex[:10]
    mallory = await api.open(new_id("mallory"), deposit=5_000)  # no overdraft
    victim = await api.open(new_id("victim"), deposit=5_000)
    assert await states(api, mallory, victim) == {
        mallory: (5_000, 2, "OPEN", 0),
        victim: (5_000, 2, "OPEN", 0),
    }
    own = partition_for(mallory.encode(), PARTITIONS)

    refund = {
        "type": "TRANSFER_REFUND",
        "command_id": f"{uid}-refund",
        "account_id": mallory,
        "to_account_id": victim,
        "amount": 1_000_000,
        "reason": "ACCOUNT_NOT_FOUND",
    }
    negative = {
        "type": "TRANSFER_CREDIT",
        "command_id": f"{uid}-negative",
        "account_id": mallory,
        "from_account_id": victim,
        "amount": -4_000,
        "currency": "EUR",
    }
    settle = {
        "type": "TRANSFER_SETTLE",
        "command_id": f"{uid}-settle",
        "account_id": mallory,
        "to_account_id": victim,
        "amount": 1_000,
    }
    plain = [refund, negative, settle]
    bundled = [{**leg, "command_id": f"{leg['command_id']}-bundled"} for leg in plain]
    now = int(time.time() * 1000)
    bundle = orjson.dumps([{"timestamp": now, "command": leg} for leg in bundled])

    async with Producer(broker) as producer:
        for leg in plain:  # (a), (b), (c): plain records keyed by the account
            await producer.send(leg)
        await producer.send(bundle, key=b"", partition=own)  # (d)
        # A deposit over HTTP, answered once applied: by then every record sent to the
        # account's partition before it has been handled.
        await api.deposit(mallory, 10)
        assert await states(api, mallory, victim) == {
            mallory: (5_010, 3, "OPEN", 0),
            victim: (5_000, 2, "OPEN", 0),
        }

        # (e), (f), (g): a genuine credit leg, read from the topic like anyone could.
        genuine_id = await transfer(api, victim, mallory, 1_000)
        async with Client(broker) as client:
            found = await client.read_raw(
                "commands",
                until=lambda records: find_leg(records, genuine_id, "TRANSFER_CREDIT") is not None,
            )
        genuine = find_leg(found, genuine_id, "TRANSFER_CREDIT")
        assert genuine is not None and genuine.get("seal"), genuine
        raised = {**genuine, "amount": 1_000_000}
        reused = {**genuine, "command_id": f"{uid}-reused-seal"}
        after_genuine = {mallory: (6_010, 4, "OPEN", 0), victim: (4_000, 3, "OPEN", 0)}
        assert await states(api, mallory, victim) == after_genuine
        for leg in (raised, reused, genuine):
            await producer.send(leg)
        await api.deposit(mallory, 10)
        assert await states(api, mallory, victim) == {
            mallory: (6_020, 5, "OPEN", 0),
            victim: (4_000, 3, "OPEN", 0),
        }

    # Every forgery is dead-lettered once, with its reason; the exact copy is not.
    forged = {leg["command_id"]: leg for leg in [*plain, *bundled, reused]}
    ours = {*forged, genuine_id}

    def letters(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {**record, "leg": orjson.loads(record["value"])}
            for record in records
            if record.get("value") and any(command_id in record["value"] for command_id in ours)
        ]

    expected = len(forged) + 1  # and the raised copy of the genuine leg
    async with Client(broker) as client:
        dead = letters(
            await client.read("commands-dlq", until=lambda found: len(letters(found)) >= expected)
        )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for letter in dead:
        by_id.setdefault(letter["leg"]["command_id"], []).append(letter)
    for command_id, leg in forged.items():
        reasons = [letter["reason"] for letter in by_id.get(command_id, [])]
        if leg["amount"] < 0:  # no leg carries one: malformed before any seal is read
            assert reasons in (["MALFORMED_COMMAND"], ["FORGED_LEG"]), (command_id, reasons)
        else:
            assert reasons == ["FORGED_LEG"], (command_id, reasons)
    for letter in dead:
        bundled_leg = letter["leg"]["command_id"].endswith("-bundled")
        assert ("index" in letter) == bundled_leg, letter
        assert letter["partition"] == own, letter
    copies = [letter["leg"] for letter in by_id.get(genuine_id, [])]
    assert copies == [raised], copies  # the exact copy is a duplicate, not a dead letter

    # No event names a forged leg; the genuine transfer has its own three, no more.
    async with EventLog(broker) as log:
        await log.wait_until(
            lambda: any(e["account_id"] == mallory and e.get("seq") == 5 for e in log.records),
            "the last deposit to the account read from events",
        )
        named = [e for e in log.records if e["command_id"] in forged]
        assert not named, named
        shapes = {
            (e["type"], e["account_id"], e.get("amount"))
            for e in log.records
            if e["command_id"] == genuine_id
        }
        assert shapes == {
            ("TransferDebited", victim, 1_000),
            ("TransferCredited", mallory, 1_000),
            ("TransferSettled", victim, 1_000),
        }, shapes
        assert not log.ledger.check(), log.ledger.check()

    # A genuine transfer still works, both ways.
    await transfer(api, mallory, victim, 2_500)
    await transfer(api, victim, mallory, 500)
    assert await states(api, mallory, victim) == {
        mallory: (4_020, 7, "OPEN", 0),
        victim: (6_000, 5, "OPEN", 0),
    }
    assert worker.process is not None and worker.process.poll() is None, logs(worker)
    await verify(broker, tmp_path / "cli", worker)
