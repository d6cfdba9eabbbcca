"""A client that writes ``commands`` in Kafka transactions, on a real Apache Kafka broker.

Kafka gives each transaction's commit or abort marker an offset, and a
``read_committed`` consumer never sees the records of an aborted transaction, so the
offsets the worker reads jump. Here a transactional client commits some deposits and
aborts others, while a plain client's deposits go to the same partitions between them.
Every committed and every plain deposit is decided exactly once, no aborted one ever is,
the balances are the reference's, and the partitions never stall on the markers.

Skipped without Java 17, or when the Kafka jars can be neither found nor fetched.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from banking_app.operations.apache_kafka import KafkaNode
from banking_app.operations.local_cluster import Worker
from support.load import EventLog, Producer, ReferenceBank, check_views, logs, settle

pytestmark = pytest.mark.kafka

ACCOUNTS = [f"tx-a{n}" for n in range(4)]


def deposits(prefix: str, count: int) -> list[dict[str, object]]:
    accounts = itertools.cycle(ACCOUNTS)
    return [
        {
            "type": "DEPOSIT",
            "command_id": f"{prefix}-{n:03d}",
            "account_id": next(accounts),
            "amount": 100 + n,
        }
        for n in range(count)
    ]


async def test_committed_commands_are_decided_once_and_aborted_ones_never(
    kafka_node: KafkaNode, tmp_path: Path
) -> None:
    node = kafka_node
    worker = Worker(node, tmp_path / "worker", env={"BANKING_BROKER_KIND": "kafka"})  # type: ignore[arg-type]
    worker.directory.mkdir(parents=True)
    bank = ReferenceBank()
    expected = {}
    opening = [
        {
            "type": "CREATE_ACCOUNT",
            "command_id": f"open-{a}",
            "account_id": a,
            "owner": a,
            "currency": "EUR",
        }
        for a in ACCOUNTS
    ]
    try:
        worker.start()
        transactional = AIOKafkaProducer(
            bootstrap_servers=node.bootstrap, transactional_id="tx-client", acks="all"
        )
        await transactional.start()
        async with Producer(node) as plain, EventLog(node) as log:  # type: ignore[arg-type]
            await plain.send_all(opening)
            for command in opening:
                expected[str(command["command_id"])] = bank.apply(command)
            for round_ in range(4):
                committed = deposits(f"commit{round_}", 12)
                aborted = deposits(f"abort{round_}", 12)
                between = deposits(f"plain{round_}", 6)
                async with transactional.transaction():
                    for command in committed:
                        await send(transactional, command)
                await plain.send_all(between[:3])
                await transactional.begin_transaction()
                for command in aborted:
                    await send(transactional, command)
                await transactional.abort_transaction()
                await plain.send_all(between[3:])
                for command in [*committed, *between]:
                    expected[str(command["command_id"])] = bank.apply(command)
            await transactional.stop()

            # Ends on the last round's abort marker, then plain records: every marker
            # and aborted record lies below outcomes the log must show.
            await settle(log, expected, node, worker)  # type: ignore[arg-type]
            applied = set(log.outcomes)
            leaked = sorted(c for c in applied if c.startswith("abort"))
            assert not leaked, f"aborted commands were decided: {leaked}" + logs(worker)
            problems = log.outcome_problems(expected)
            assert not problems, "\n".join(problems) + logs(worker)
        await check_views(worker, bank)
    finally:
        worker.stop()


async def send(producer: AIOKafkaProducer, command: dict[str, object]) -> None:
    await producer.send_and_wait(
        "commands", orjson.dumps(command), key=str(command["account_id"]).encode()
    )
