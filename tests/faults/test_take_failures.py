"""Faults injected at each step of a take (``BANKING_FAULTS``, banking_app.runtime.faults).

Each test runs its own embedded broker and one worker subprocess whose environment makes
a step of its takes fail: ``decode`` (reading a record), ``decide`` (deciding one input),
``publish`` (producing a take's events and legs, failing after half of them are out),
``flush`` (after the changelogs have the table writes, before the local store does) or
``project`` (folding a record into the read model). A mixed load (``Workload.mixed``:
opens, deposits, withdrawals, transfers across partitions and currencies, some refused
or refunded, re-sends under the same command id, accounts closed and used after their
close) runs through it; afterwards every command must have exactly the one outcome the
reference model expects, the books must balance, and ``replay --verify`` must find the
event log, the command side's table and the read model in agreement.

Where a failure is retried differs by step, and so does what the worker logs:

- ``publish`` and ``flush`` fail the whole take, which is handled again after a backoff
  (``banking_app.runtime.retries``: "... failed (attempt 1 of 16): ...; retrying in ...");
- ``decode`` and ``decide`` fail one input, which is tried once more at once
  ("decoding N failed (...); trying once more", "deciding input (N, i) failed (...);
  trying once more"); an input that fails twice is set aside (dead-lettered);
- ``project`` fails one fold, which is tried once more at once ("folding N failed
  (...); trying once more"); had it failed again it would be skipped ("folding it failed
  twice"), so the test also checks that no such line is logged and that the read model
  is complete (``check_views``, ``replay --verify``).

Every test also checks that each fault was injected ("injecting a fault at <step>"), so
a dead hook fails it.

Then two faults that never go away: an input whose deciding always fails
(``decide:<id>``) is dead-lettered as ``PROCESSING_FAILED`` and the rest goes on; and a
publish that always fails (``publish@1+``) stops the worker after
``BANKING_TAKE_ATTEMPTS`` attempts without committing the take, so a worker started
again without the fault gives every command its one outcome.

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17).
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from banking_app.domain.commands import PUBLIC_COMMAND_TYPES
from support.api import running_workers
from support.brokers import BROKER_KINDS, started_broker
from support.cluster import Broker, Client, Worker, command
from support.load import (
    EventLog,
    Feed,
    Producer,
    Workload,
    check_views,
    committed_inputs,
    logs,
    settled_as_expected,
    verify,
    wait_for_log,
)

pytestmark = pytest.mark.kafka

#: Commands of the mixed load after the accounts are opened (closing lives come on top).
STREAM = 250
#: Seconds between two commands: takes stay small, so the take-level faults (counted
#: in takes) all fire during the load.
INTERVAL = 0.01
BACKOFF = "0.05"
#: Seconds a worker whose take keeps failing is given to stop by itself.
EXIT_TIMEOUT = 120.0
#: Seconds a worker is given to stop after SIGTERM (it stops in a second or two).
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class StepFaults:
    #: ``BANKING_FAULTS``: one-shot faults, far enough apart that a retry never meets
    #: the next one (two in a row on one input would set it aside).
    spec: str
    #: A regex for what the worker logs when it tries the failed work again.
    retried: str

    @property
    def count(self) -> int:
        return len(self.spec.split(","))


STEPS = {
    "decode": StepFaults(
        "decode@5,decode@60,decode@160",
        r"decoding \d+ failed \(InjectedFault\('injected fault at decode'\)\); "
        r"trying once more",
    ),
    "decide": StepFaults(
        "decide@5,decide@60,decide@160",
        r"deciding input \(\d+, \d+\) failed \(InjectedFault\('injected fault at decide'\)\); "
        r"trying once more",
    ),
    "publish": StepFaults(
        "publish@3,publish@12,publish@25",
        r"process_commands: a take of \d+ records failed \(attempt 1 of \d+\): "
        r"InjectedFault\('injected fault at publish'\); retrying in",
    ),
    "flush": StepFaults(
        "flush@3,flush@12,flush@25",
        r"process_commands: a take of \d+ records failed \(attempt 1 of \d+\): "
        r"InjectedFault\('injected fault at flush'\); retrying in",
    ),
    "project": StepFaults(
        "project@5,project@100,project@300",
        r"folding \d+ failed \(InjectedFault\('injected fault at project'\)\); "
        r"trying once more",
    ),
}

#: Lines a worker logs only when a fault was not absorbed by a retry.
GAVE_UP = ("setting aside input", "folding it failed twice", "stopping the worker", "Crashed")


def log_text(worker: Worker) -> str:
    return worker.log_path.read_text(errors="replace")


async def still_right(worker: Worker, work: Workload, tmp_path: Path) -> None:
    """The worker runs and shows the reference's balances; ``replay --verify`` is clean."""
    assert worker.process is not None and worker.process.poll() is None, logs(worker)
    assert worker.health() == 200, logs(worker)
    await check_views(worker, work.bank)
    await verify(worker.broker, tmp_path / "cli", worker)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
@pytest.mark.parametrize("step", sorted(STEPS))
async def test_a_fault_at_any_step_of_a_take_is_retried_and_changes_no_outcome(
    tmp_path: Path, request: pytest.FixtureRequest, step: str, broker_kind: str
) -> None:
    faults = STEPS[step]
    work = Workload(f"fault-{step}", random.Random(step), accounts=12)
    creations, deposits = work.opening()
    stream = work.mixed(STREAM, closes=3)
    env = {"BANKING_FAULTS": faults.spec, "BANKING_TAKE_RETRY_BACKOFF": BACKOFF}

    with (
        started_broker(broker_kind, request, tmp_path / "kafka") as broker,
        running_workers(broker, tmp_path, env) as [worker],
    ):
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits])
            await Feed(producer, stream, INTERVAL).start().finished()
            await settled_as_expected(log, work, broker, worker)
        await still_right(worker, work, tmp_path)

        text = log_text(worker)
        injected = text.count(f"injecting a fault at {step}")
        assert injected == faults.count, (
            f"{injected} of {faults.count} faults injected at {step}" + logs(worker)
        )
        retried = re.findall(faults.retried, text)
        assert len(retried) == faults.count, (faults.retried, retried, logs(worker))
        for line in GAVE_UP:
            assert line not in text, (line, logs(worker))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_an_input_whose_deciding_always_fails_is_dead_lettered_and_the_rest_goes_on(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("poison-decide", random.Random(23), accounts=8)
    creations, deposits = work.opening()
    before = work.mixed(80, closes=1)
    # Not applied to the reference: it must have no effect at all.
    poison = command("DEPOSIT", "poison-decide-always", work.account_ids[0], amount=777)
    after = work.stream(80)
    env = {
        "BANKING_FAULTS": f"decide:{poison['command_id']}",
        "BANKING_TAKE_RETRY_BACKOFF": BACKOFF,
    }

    with (
        started_broker(broker_kind, request, tmp_path / "kafka") as broker,
        running_workers(broker, tmp_path, env) as [worker],
    ):
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits])
            # One burst: the poison shares its takes with the commands around it.
            await producer.send_all([*before, poison, *after], burst=True)
            await settled_as_expected(log, work, broker, worker)

            async with Client(broker) as client:
                dead = await client.read("commands-dlq", until=lambda found: len(found) >= 1)
            assert [d["reason"] for d in dead] == ["PROCESSING_FAILED"], dead
            [letter] = dead
            assert "injected fault at decide" in letter["detail"], letter
            assert orjson.loads(letter["value"])["command_id"] == poison["command_id"], letter
            assert letter["topic"] == "commands" and isinstance(letter["offset"], int), letter
            # No event at all under its id: the bank did not decide it.
            assert not [e for e in log.records if e["command_id"] == poison["command_id"]]

            # The worker goes on: a command sent now is applied too.
            later = work.deposit(work.account_ids[0], 5)
            await producer.send(later)
            await settled_as_expected(log, work, broker, worker)

        text = log_text(worker)
        assert text.count("injecting a fault at decide") == 2, logs(worker)  # tried twice
        assert text.count("setting aside input") == 1, logs(worker)
        await still_right(worker, work, tmp_path)


async def exit_code(worker: Worker, timeout: float, why: str) -> int:
    """The worker's exit code, once it has stopped; fails if it runs ``timeout`` s more."""
    assert worker.process is not None
    try:
        return await asyncio.to_thread(worker.process.wait, timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {timeout:.0f} s {why}" + logs(worker)) from None


async def read_again_after_restart(
    log: EventLog, work: Workload, broker: Broker, worker: Worker
) -> None:
    """The stopped worker's take was not committed: started again on its data directory
    without the fault, the worker reads it again and every command gets its outcome.

    Only the public commands are checked. The fault fails a publish half-way, and the
    half that went out may hold claim legs, which another take handles in full and
    commits, as it should: a claim made twice answers the same."""
    committed = await committed_inputs(broker, set(work.expected))
    public = {
        command: kinds & set(PUBLIC_COMMAND_TYPES)
        for command, kinds in committed.items()
        if kinds & set(PUBLIC_COMMAND_TYPES)
    }
    assert not public, committed
    worker.env = {}
    await asyncio.to_thread(worker.start)
    await settled_as_expected(log, work, broker, worker)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_a_take_that_keeps_failing_stops_the_worker_and_is_read_again_after_restart(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    work = Workload("give-up", random.Random(31), accounts=6, duplicate_share=0.0)
    creations, deposits = work.opening()
    more = [work.deposit(account, 100 + n) for n, account in enumerate(work.account_ids)]
    env = {
        "BANKING_FAULTS": "publish@1+",
        "BANKING_TAKE_ATTEMPTS": "2",
        "BANKING_TAKE_RETRY_BACKOFF": "0.01",
    }

    with (
        started_broker(broker_kind, request, tmp_path / "kafka") as broker,
        running_workers(broker, tmp_path, env) as [worker],
    ):
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits, *more], burst=True)

            code = await exit_code(worker, EXIT_TIMEOUT, "with a take that keeps failing")
            assert code != 0, logs(worker)
            text = log_text(worker)
            assert "injecting a fault at publish" in text, logs(worker)
            assert "retrying in" in text, logs(worker)
            assert "failed 2 times" in text and "stopping the worker" in text, logs(worker)
            await read_again_after_restart(log, work, broker, worker)
        await still_right(worker, work, tmp_path)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("broker_kind", BROKER_KINDS)
async def test_a_worker_retrying_a_take_stops_when_asked_and_the_take_is_read_again(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    """SIGTERM while a take is being retried (a broker refusing writes for a while, say)
    stops the worker without acknowledging the take; a worker started again without
    the fault gives every command its one outcome. A stop must not wait for the retries
    to run out: with BANKING_TAKE_ATTEMPTS=1000 that is over an hour."""
    work = Workload("stop-retrying", random.Random(41), accounts=4, duplicate_share=0.0)
    creations, deposits = work.opening()
    env = {
        "BANKING_FAULTS": "publish@1+",
        "BANKING_TAKE_ATTEMPTS": "1000",
        "BANKING_TAKE_RETRY_BACKOFF": BACKOFF,
    }

    with (
        started_broker(broker_kind, request, tmp_path / "kafka") as broker,
        running_workers(broker, tmp_path, env) as [worker],
    ):
        async with Producer(broker) as producer, EventLog(broker) as log:
            await producer.send_all([*creations, *deposits], burst=True)
            await wait_for_log(worker, "retrying in", count=3)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            await exit_code(worker, STOP_TIMEOUT, "after SIGTERM")
            await read_again_after_restart(log, work, broker, worker)
        await still_right(worker, work, tmp_path)
