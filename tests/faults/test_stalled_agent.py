"""``/health`` reports a worker whose agent makes no progress as unhealthy.

A worker whose every publish fails (``BANKING_FAULTS=publish@1+``) retries its take for
as long as ``BANKING_TAKE_ATTEMPTS`` allows, handling nothing meanwhile. Idle, before
any command, it is ready; once commands wait for the retried take longer than
``BANKING_STALL_SECONDS``, ``/health`` answers 503 ``stalled``, naming the commands
topic and its lag. (Without the check it would answer 200 ``ready`` throughout.)
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from support.api import running_workers
from support.cluster import Broker
from support.load import Producer, Workload, get_json, wait_for_log

pytestmark = pytest.mark.kafka

#: Seconds the stalled answer is given to appear (the stall itself is 2 s).
TIMEOUT = 120.0


async def test_health_says_stalled_while_a_take_keeps_failing(tmp_path: Path) -> None:
    work = Workload("stalled", random.Random(3), accounts=3, duplicate_share=0.0)
    creations, deposits = work.opening()
    env = {
        "BANKING_FAULTS": "publish@1+",
        "BANKING_TAKE_ATTEMPTS": "1000",
        "BANKING_TAKE_RETRY_BACKOFF": "0.05",
        "BANKING_STALL_SECONDS": "2",
    }
    with Broker.start() as broker, running_workers(broker, tmp_path, env) as [worker]:
        await asyncio.sleep(3)  # longer than the stall time: idle is not stalled
        assert await get_json(f"{worker.url}/health") == (200, {"status": "ready"})

        async with Producer(broker) as producer:
            await producer.send_all([*creations, *deposits], burst=True)
        await wait_for_log(worker, "retrying in", count=2)

        deadline = time.monotonic() + TIMEOUT
        answer = await get_json(f"{worker.url}/health")
        while answer[0] != 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            answer = await get_json(f"{worker.url}/health")
        status, body = answer
        assert status == 503, answer
        assert body["status"] == "stalled", body
        [stall] = [s for s in body["stalled"] if s["topic"] == "commands"]
        assert stall["lag"] >= 1 and stall["seconds"] >= 2, body
