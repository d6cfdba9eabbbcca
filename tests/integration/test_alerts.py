"""A scripted day of activity on a real broker raises exactly the expected alerts, and
the same ones again after ``rebuild-projections``.

Commands go on ``commands`` with record timestamps of yesterday (their events'
``occurred_at``), so the windows follow the story's times, not the test's. Each broker
kind gets its own broker and worker: the test stops the worker and rebuilds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Client, Worker
from support.load import all_committed, banking_app, get_json

pytestmark = pytest.mark.kafka

#: Midnight UTC of yesterday: recent enough for the commands topic's retention.
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def ms(hour: int, minute: int = 0) -> int:
    return int((DAY + timedelta(hours=hour, minutes=minute)).timestamp() * 1000)


def script() -> list[tuple[int, dict[str, Any]]]:
    """The day, as (record timestamp, command): one account per rule, and the rest quiet."""
    day: list[tuple[int, dict[str, Any]]] = []

    def do(at: int, kind: str, account: str, **fields: Any) -> None:
        command_id = f"day-{len(day)}"
        day.append((at, {"type": kind, "command_id": command_id, "account_id": account, **fields}))

    for account in ("ann", "bob", "payer", "mule", "fan", "probe", "quiet", *DESTINATIONS):
        do(ms(6), "CREATE_ACCOUNT", account, owner=account, currency="EUR", overdraft_limit=10**6)
    # Velocity: six withdrawals from 09:00 to 09:05.
    do(ms(8), "DEPOSIT", "ann", amount=100_000)
    for minute in range(6):
        do(ms(9, minute), "WITHDRAW", "ann", amount=100)
    # Large movement: five deposits of 1,000, then 20,000 out: over ten times the average.
    for minute in range(5):
        do(ms(8, minute), "DEPOSIT", "bob", amount=1_000)
    do(ms(10), "WITHDRAW", "bob", amount=20_000)
    # Pass-through: 200,000 in from the payer at 11:00, 170,000 out at 11:20.
    do(ms(7), "DEPOSIT", "payer", amount=300_000)
    do(ms(11), "TRANSFER_MONEY", "payer", to_account_id="mule", amount=200_000)
    do(ms(11, 20), "WITHDRAW", "mule", amount=170_000)
    # Fan-out: eleven accounts paid from 12:00 to 12:50, five minutes apart (no velocity).
    do(ms(11, 55), "DEPOSIT", "fan", amount=10_000)
    for index, account in enumerate(DESTINATIONS):
        do(ms(12, index * 5), "TRANSFER_MONEY", "fan", to_account_id=account, amount=10)
    # Probing: four withdrawals over a daily limit of 100, refused from 14:00 to 14:03.
    do(ms(13), "SET_LIMITS", "probe", daily_withdrawal_limit=100)
    for minute in range(4):
        do(ms(14, minute), "WITHDRAW", "probe", amount=500)
    # Quiet: nothing to see.
    do(ms(15), "DEPOSIT", "quiet", amount=5_000)
    do(ms(15, 30), "WITHDRAW", "quiet", amount=100)
    return day


DESTINATIONS = tuple(f"dest-{index}" for index in range(11))
EXPECTED = {
    ("ann", "velocity"),
    ("bob", "large_movement"),
    ("mule", "pass_through"),
    ("fan", "fan_out"),
    ("probe", "probing"),
}


@pytest.fixture(params=BROKER_KINDS)
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Worker]:
    with started_broker(request.param, request, tmp_path / "kafka") as broker:
        worker = Worker(broker, tmp_path / "worker")
        worker.directory.mkdir()
        worker.start()
        try:
            yield worker
        finally:
            worker.stop()


async def send_day(worker: Worker) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=worker.broker.bootstrap, acks="all")
    await producer.start()
    try:
        # Hostile input first: the alert agent must step over it.
        await producer.send_and_wait("events", b"not an event", key=b"ann")
        for timestamp, command in script():
            await producer.send_and_wait(
                "commands",
                orjson.dumps(command),
                key=command["account_id"].encode(),
                timestamp_ms=timestamp,
            )
    finally:
        await producer.stop()


async def bank_alerts(worker: Worker, query: str = "") -> list[dict[str, Any]]:
    status, body = await get_json(f"{worker.url}/alerts{query}")
    assert status == 200, body
    return body["alerts"]  # type: ignore[no-any-return]


async def until_alerts(worker: Worker, count: int, timeout: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await get_json(f"{worker.url}/alerts")
        if status == 200 and len(body["alerts"]) >= count:
            return body["alerts"]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"alerts so far: {body}\n{worker.log_tail()}"
        await asyncio.sleep(0.5)


def cases(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(alert["account_id"], alert["rule"]) for alert in alerts}


async def on_topic(worker: Worker) -> list[dict[str, Any]]:
    async with Client(worker.broker) as client:
        return await client.read("alerts", lambda found: len(found) >= len(EXPECTED), 120)


async def test_a_scripted_day_raises_exactly_the_expected_alerts_and_a_rebuild_the_same(
    bank: Worker, tmp_path: Path
) -> None:
    await send_day(bank)
    await until_alerts(bank, len(EXPECTED))
    # Every event read by every agent, the alert agent included: nothing more to come.
    await all_committed(bank.broker, timeout=180)
    alerts = await bank_alerts(bank)
    assert cases(alerts) == EXPECTED, alerts
    assert len(alerts) == len(EXPECTED)
    published = await on_topic(bank)
    assert sorted(a["alert_id"] for a in published) == sorted(a["alert_id"] for a in alerts)
    assert all(record["_key"] == record["account_id"].encode() for record in published)

    # Each account's own alerts, wherever they live.
    for account, rule in EXPECTED:
        status, body = await get_json(f"{bank.url}/accounts/{account}/alerts")
        assert status == 200 and [a["rule"] for a in body["alerts"]] == [rule], body
    status, body = await get_json(f"{bank.url}/accounts/quiet/alerts")
    assert (status, body["alerts"]) == (200, [])
    # Since 14:00: only the probing, raised at 14:03.
    since = (DAY + timedelta(hours=14)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cases(await bank_alerts(bank, f"?since={since}")) == {("probe", "probing")}
    status, problem = await get_json(f"{bank.url}/alerts?since=yesterday-ish")
    assert status == 400 and problem["status"] == 400

    bank.stop()
    rebuilt = await asyncio.to_thread(banking_app, bank.broker, tmp_path, "rebuild-projections")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "raised 5 alerts; 0 of them were not on the alerts topic" in rebuilt.stdout
    bank.start()
    assert await until_alerts(bank, len(EXPECTED)) == alerts
    assert sorted(a["alert_id"] for a in await on_topic(bank)) == sorted(
        a["alert_id"] for a in alerts
    )
