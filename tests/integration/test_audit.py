"""Replay, verification, rebuilding the read model, and reading old event versions.

Each test runs its own broker and worker: they stop workers and write to topics directly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from banking_app.runtime.topics import partition_for
from support.cluster import Broker, Worker

pytestmark = pytest.mark.kafka


@pytest.fixture()
def bank(tmp_path: Path) -> Iterator[Worker]:
    with Broker.start() as broker:
        worker = Worker(broker, tmp_path / "worker")
        worker.directory.mkdir()
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()


def banking_app(worker: Worker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BROKER": worker.broker.url}
    return subprocess.run(
        [sys.executable, "-m", "banking_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def post(worker: Worker, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{worker.url}{path}?wait=true", json=body) as response,
    ):
        return await response.json(content_type=None)  # type: ignore[no-any-return]


async def get(worker: Worker, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{worker.url}{path}") as response:
        return response.status, await response.json(content_type=None)


async def some_business(worker: Worker) -> None:
    for account, currency in (("ann", "EUR"), ("bob", "EUR"), ("cat", "USD")):
        await post(
            worker, "/accounts", {"account_id": account, "owner": account, "currency": currency}
        )
    await post(worker, "/accounts/ann/deposits", {"amount": 1_000})
    await post(worker, "/accounts/cat/deposits", {"amount": 50})
    await post(
        worker, "/transfers", {"from_account_id": "ann", "to_account_id": "bob", "amount": 300}
    )
    await post(
        worker, "/transfers", {"from_account_id": "ann", "to_account_id": "cat", "amount": 10}
    )  # currency mismatch: refunded
    await post(worker, "/accounts/bob/withdrawals", {"amount": 400})  # rejected


async def produce(
    worker: Worker, topic: str, key: str, value: dict[str, Any] | None, partition: int | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.broker.bootstrap)
    await producer.start()
    try:
        payload = orjson.dumps(value) if value is not None else None
        await producer.send_and_wait(topic, payload, key=key.encode(), partition=partition)
    finally:
        await producer.stop()


async def test_replay_reports_the_books_and_verify_agrees_with_the_tables(bank: Worker) -> None:
    await some_business(bank)

    audited = await asyncio.to_thread(banking_app, bank, "replay", "--verify")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    report = audited.stdout
    assert "accounts         3 (3 open)" in report
    assert "EUR  balances 1000  in flight 0  deposited 1000  withdrawn 0" in report
    assert "USD  balances 50  in flight 0  deposited 50  withdrawn 0" in report
    assert "TransferRefunded   1" in report and "CommandRejected    1" in report
    assert "problems         0" in report


async def test_a_damaged_read_model_is_found_and_rebuilt_from_the_events(bank: Worker) -> None:
    await some_business(bank)
    bank.stop()
    # Damage the read model the way a buggy projection would: a wrong balance for ann,
    # and a view of an account that never existed.
    views = "banking-app-account-views-changelog"
    wrong = {
        "account_id": "ann",
        "owner": "ann",
        "currency": "EUR",
        "balance": 999_999,
        "overdraft_limit": 0,
        "in_flight": 0,
        "status": "OPEN",
        "version": 9,
        "created_at": "",
        "updated_at": "",
        "recent": [],
    }
    await produce(bank, views, "ann", wrong, partition_for(b"ann", 8))
    await produce(
        bank, views, "ghost", {**wrong, "account_id": "ghost"}, partition_for(b"ghost", 8)
    )

    found = await asyncio.to_thread(banking_app, bank, "replay", "--verify")
    assert found.returncode == 1
    assert "read model, account ann" in found.stdout
    assert "read model, account ghost" in found.stdout

    rebuilt = await asyncio.to_thread(banking_app, bank, "rebuild-projections")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "deleted 1 read-model keys" in rebuilt.stdout

    bank.start()
    status, ann = await get(bank, "/accounts/ann")
    assert status == 200 and (ann["balance"], ann["version"]) == (700, 5)
    status, _ = await get(bank, "/accounts/ghost")
    assert status == 404
    status, history = await get(bank, "/accounts/ann/transactions")
    assert [item["seq"] for item in history["items"]] == [5, 4, 3, 2, 1]
    verified = await asyncio.to_thread(banking_app, bank, "replay", "--verify")
    assert verified.returncode == 0, verified.stdout


async def test_old_events_are_upcast_for_replay_and_projections(bank: Worker) -> None:
    # Written by an older release: schema v1 had no occurred_at, no currency on money
    # events and no schema_version field at all.
    legacy = "legacy-1"
    created = {
        "type": "AccountCreated",
        "event_id": "v1-a",
        "command_id": "v1-c1",
        "account_id": legacy,
        "seq": 1,
        "owner": "Old",
        "currency": "EUR",
        "overdraft_limit": 0,
    }
    deposited = {
        "type": "MoneyDeposited",
        "event_id": "v1-b",
        "command_id": "v1-c2",
        "account_id": legacy,
        "seq": 2,
        "amount": 40,
        "balance": 40,
    }
    partition = partition_for(legacy.encode(), 8)
    await produce(bank, "events", legacy, created, partition)
    await produce(bank, "events", legacy, deposited, partition)

    for _ in range(100):
        status, view = await get(bank, f"/accounts/{legacy}")
        if status == 200 and view["version"] == 2:
            break
        await asyncio.sleep(0.2)
    assert (view["balance"], view["created_at"]) == (40, "1970-01-01T00:00:00.000Z")

    audited = await asyncio.to_thread(banking_app, bank, "replay")
    assert "MoneyDeposited     1" in audited.stdout
    # Deposits of unknown currency are reported under "?" rather than guessed.
    assert "?    balances 0  in flight 0  deposited 40" in audited.stdout
