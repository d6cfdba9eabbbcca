"""Failover: one of two workers is SIGKILLed; the survivor answers and processes for it.

The accounts live on every partition; the two workers own half each, and each keeps a
standby replica of the other's (Faust's default of one). After the SIGKILL:

- every account, and its alerts, is answered by the survivor at once: a query for a
  partition the dead worker owned is read from the survivor's standby replica until the
  group notices the death and the survivor takes the partition over (``web.routed``). No
  answer in between is an error. A replica may lack the last writes it had not yet
  fetched (on Kafka, with its longer fetch wait, it did), so those answers are checked
  for being a state the account was in; once the owner answers, the balance is exact;
- a deposit into an account of each of the dead worker's partitions is decided, and
  shown, once the survivor has taken the partitions over.

The test prints how long each took (``FAILOVER ...`` lines; the figures go in the
report, not in assertions). Run on Tansu and on a single Apache Kafka node.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from banking_app.runtime.topics import partition_for
from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Worker
from support.load import EventLog, Producer, Workload, all_committed, logs, settle

pytestmark = pytest.mark.kafka

PARTITIONS = 8
#: Generous bounds for a loaded two-core machine; the figures are printed, not asserted.
TAKEOVER_TIMEOUT = 180.0


async def views(url: str, accounts: list[str]) -> dict[str, tuple[int, Any, str | None]]:
    """Each account's GET through ``url``: status, body, and the replica header."""
    answers = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for account in accounts:
            async with session.get(f"{url}/accounts/{account}") as response:
                body = await response.json(content_type=None)
                answers[account] = (
                    response.status,
                    body,
                    response.headers.get("X-Bank-Replica"),
                )
    return answers


async def alerts_unanswered(url: str, accounts: list[str]) -> dict[str, tuple[int, Any]]:
    """The accounts whose ``GET /accounts/{id}/alerts`` through ``url`` is not a 200 with
    a list of alerts: that view is routed, and falls back on a replica, as the others."""
    failed = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for account in accounts:
            async with session.get(f"{url}/accounts/{account}/alerts") as response:
                body = await response.json(content_type=None)
                if response.status != 200 or not isinstance(body.get("alerts"), list):
                    failed[account] = (response.status, body)
    return failed


async def wait_ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + TAKEOVER_TIMEOUT
    while not all(w.health() == 200 for w in workers):
        assert time.monotonic() < deadline, logs(*workers)
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_the_survivor_answers_at_once_and_processes_after_takeover(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("failover", random.Random(17), accounts=32, duplicate_share=0.0)
    creations, deposits = work.opening()
    #: Each account's balance after its one deposit; before it, 0.
    opening = {d["account_id"]: d["amount"] for d in deposits}
    with started_broker(broker_kind, request, tmp_path / "kafka") as broker:
        survivor = Worker(broker, tmp_path / "survivor")
        victim = Worker(broker, tmp_path / "victim")
        workers = [survivor, victim]
        try:
            for worker in workers:
                worker.directory.mkdir()
                await asyncio.to_thread(worker.start)
            await wait_ready(workers)
            async with Producer(broker) as producer, EventLog(broker) as log:
                await producer.send_all([*creations, *deposits])
                await settle(log, work.expected, broker, *workers)
                # Every input handled and committed, so every table write is in its
                # changelog: both replicas can have every account before the kill.
                await all_committed(broker)
                before = await views(survivor.url, work.account_ids)
                assert all(status == 200 for status, _, _ in before.values()), before

                killed_at = time.monotonic()
                victim.kill()

                # Queries: every account answered, with its balance, from the first try.
                rounds, replica_answers, all_local_at = 0, 0, None
                victim_partitions: set[int] = set()
                while all_local_at is None:
                    answers = await views(survivor.url, work.account_ids)
                    rounds += 1
                    wrong = {
                        account: answer
                        for account, answer in answers.items()
                        if answer[0] != 200
                        or answer[1]["balance"] not in (0, opening[account])
                        or (not answer[2] and answer[1]["balance"] != opening[account])
                    }
                    assert not wrong, f"round {rounds}: {wrong}\n{logs(survivor)}"
                    unanswered = await alerts_unanswered(survivor.url, work.account_ids)
                    assert not unanswered, f"round {rounds}: {unanswered}\n{logs(survivor)}"
                    replica_answers += sum(1 for *_, replica in answers.values() if replica)
                    victim_partitions |= {
                        partition_for(account.encode(), PARTITIONS)
                        for account, (*_, replica) in answers.items()
                        if replica
                    }
                    if not any(replica for *_, replica in answers.values()):
                        all_local_at = time.monotonic()
                    assert time.monotonic() - killed_at < TAKEOVER_TIMEOUT, logs(survivor)
                    await asyncio.sleep(0.2)

                # Commands: one deposit on every partition, the dead worker's among them.
                probes: dict[int, str] = {}
                for account in work.account_ids:
                    partition = partition_for(account.encode(), PARTITIONS)
                    probes.setdefault(partition, account)
                sent_at = time.monotonic()
                await producer.send_all([work.deposit(a, 7) for a in probes.values()])
                await settle(log, work.expected, broker, survivor)
                processed_at = time.monotonic()
        finally:
            for worker in workers:
                worker.stop()
    print(
        f"\nFAILOVER {broker_kind}: every account answered from the first query after "
        f"the SIGKILL ({rounds} rounds, {replica_answers} answers from the standby "
        f"replica); all answered by their owner after {all_local_at - killed_at:.1f} s; "
        f"a deposit on each partition processed {processed_at - killed_at:.1f} s after "
        f"the kill ({processed_at - sent_at:.1f} s after it was sent); "
        f"victim partitions seen on the replica: {sorted(victim_partitions)}"
    )
