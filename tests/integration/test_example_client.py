"""examples/faust_client.py, run as its users run it, against the real broker and worker.

The example is a Faust app of its own: it sends ``CreateAccount`` and ``Deposit`` Records
with ``commands.send`` and prints the events it reads from ``events`` as typed Records.
The test reads its output for the typed deposit, reads the bytes it put on ``commands``
(plain wire JSON, no Faust metadata), and asks the worker's HTTP API for the balance the
bank applied.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from banking_app.domain import parse_command
from banking_app.records import MoneyDeposited, event_record
from banking_app.runtime import codec
from banking_app.runtime.topics import partition_for
from support.cluster import READY_TIMEOUT, Broker, Worker

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faust_client.py"
#: A new Faust app's first group join and the bank's work: generous on a slow machine.
TIMEOUT = 2 * READY_TIMEOUT


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.HTTPError, OSError):
        return None


async def sent_commands(worker: Worker, key: bytes, count: int) -> list[bytes]:
    """The raw values of the first ``count`` records under ``key`` on ``commands``.

    Read from the one partition the key hashes to, where the bank decides them.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=worker.broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition("commands", partition_for(key, worker.partitions))
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        found: list[bytes] = []
        deadline = time.monotonic() + TIMEOUT
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(partition, timeout_ms=500)
            found += [m.value for m in batch.get(partition, []) if m.key == key]
        return found
    finally:
        await consumer.stop()


def wait_until(
    check: Callable[[], Any], process: subprocess.Popen[bytes], log: Path, what: str
) -> Any:
    """Poll ``check`` until it gives a true value; fail early if the example exited."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if process.poll() is not None:
            pytest.fail(f"the example exited ({process.returncode}):\n{log.read_text()}")
        time.sleep(0.5)
    pytest.fail(f"{what} not seen after {TIMEOUT} s:\n{log.read_text()[-6000:]}")


def test_the_example_client_opens_and_deposits_through_typed_records(
    broker: Broker, worker: Worker, tmp_path: Path
) -> None:
    account = f"example-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "client.log"
    env = {
        **os.environ,
        "KAFKA_BROKER": broker.url,
        "ACCOUNT_ID": account,
        "DEPOSIT_AMOUNT": "4321",
        "PYTHONUNBUFFERED": "1",
    }
    # As its docstring says to run it; without its web server, whose port may be taken.
    argv = [sys.executable, str(EXAMPLE), "--datadir", str(tmp_path / "data"), "worker"]
    argv += ["-l", "info", "--without-web"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        # The typed line is printed from a MoneyDeposited Record's own fields.
        typed = f"{account}: deposited 4321, balance 4321 EUR"
        wait_until(lambda: typed in log.read_text(), process, log, "the typed deposit")
        text = log.read_text()
        assert "<AccountCreated: event_id=" in text and f"account_id='{account}'" in text

        # What Faust put on the wire: the bytes the bank itself writes for these commands.
        sent = asyncio.run(sent_commands(worker, account.encode(), 2))
        assert [orjson.loads(value)["type"] for value in sent] == ["CREATE_ACCOUNT", "DEPOSIT"]
        for value in sent:
            assert b"__faust" not in value
            assert value == codec.dumps(parse_command(orjson.loads(value)).to_dict())

        view = wait_until(
            lambda: (v := get_json(f"{worker.url}/accounts/{account}")) and v["version"] == 2 and v,
            process,
            log,
            "the account in the worker's read model",
        )
        assert (view["balance"], view["currency"], view["status"]) == (4321, "EUR", "OPEN")
        outcome = wait_until(
            lambda: (o := get_json(f"{worker.url}/commands/{account}-deposit")) and o,
            process,
            log,
            "the deposit's outcome",
        )
        assert outcome["status"] == "accepted", outcome
        [deposited] = [event_record(e) for e in outcome["events"]]
        assert isinstance(deposited, MoneyDeposited) and deposited.amount == 4321
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
