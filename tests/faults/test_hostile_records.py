"""Any record from any producer on ``commands``: the valid commands around it still apply.

Anyone who can write ``commands`` can send any key (none, empty, not UTF-8, huge), any
value (random bytes, ~900 KB, JSON of any shape, arrays, saga legs), any record
timestamp (0, -1, up to 2**63 - 1 ms) and any headers. None of it may stop the worker
or cost a valid command its outcome:

- the reported incident: one bundle record (empty key) whose only item carries a
  timestamp in year 11476, in the same burst as 200 deposits (the session worker);
- a hypothesis-driven mix of hostile records, each between valid deposits, against one
  worker for every example (on a broker of its own, see ``hostile_worker``), with fresh
  account and command ids per example: every deposit is applied exactly once, nothing
  else moves, and the worker stays healthy;
- a command keyed by something else than its account is re-keyed before it is applied:
  its ``occurred_at`` must still be its record's timestamp (0 included);
- such a command with the record timestamp 2**63 - 1 ms must not stop the worker (its
  own broker and worker: while the bug stands, it does).

Run on Tansu and on a single Apache Kafka node (skipped there without Java 17). On Tansu
the incident and the re-keyed timestamps use the session's broker and worker, and the
hostile mix a broker and worker of its own; on Kafka all three share one node and one
worker of this module (a JVM takes seconds to start; that worker is no other module's,
so a record stopping it fails this module alone). The largest timestamp has a broker of
its own on either. The Kafka nodes accept any record timestamp (``KAFKA_CONFIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from banking_app.domain import parse_command
from banking_app.event_processor import leg_seal
from banking_app.operations.local_cluster import LEG_KEY
from banking_app.runtime.topics import partition_for
from support.api import running_workers
from support.brokers import BROKER_KINDS, broker_and_worker, started_broker
from support.cluster import Broker, Client, Worker
from support.load import (
    EventLog,
    Producer,
    Workload,
    check_views,
    logs,
    verify,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 8
#: Milliseconds: year 11476, no date an event can show (the reported incident).
YEAR_11476 = 300_000_000_000_000
INT64_MAX = 2**63 - 1
T = TypeVar("T")
#: Seconds to wait for the outcomes of one burst.
SETTLE = 120.0
#: The Kafka node's settings on top of its own: accept any record timestamp, as Tansu
#: does and as Kafka did by default before 4.0. Kafka 4 refuses (INVALID_TIMESTAMP) a
#: record stamped more than ``log.message.timestamp.after.max.ms`` (1 h by default) after
#: the broker's clock, so by default the far-future timestamps here would never reach the
#: bank; a broker configured otherwise (or an older one) lets them through.
KAFKA_CONFIG = {"log.message.timestamp.after.max.ms": str(INT64_MAX)}


#: Lines of a worker's log that say it is not well: an agent crashed, a take failed (it
#: is retried for about a minute before the worker stops, and the events of the
#: partitions produced before the failure are out meanwhile, so every outcome can show
#: while the worker is on its way down), or the worker is stopping.
TROUBLE = ("records failed (attempt", "Crashed reason=", "stopping the worker")


def trouble(worker: Worker) -> str | None:
    """What is wrong with the worker, with the log lines that say so; None if nothing."""
    assert worker.process is not None
    lines = worker.log_path.read_text(errors="replace").splitlines()
    for n, line in enumerate(lines):
        if any(sign in line for sign in TROUBLE):
            shown = "\n".join(lines[n : n + 25])
            return f"the worker's log ({worker.log_path}) says:\n{shown}"
    if worker.process.poll() is not None:
        return f"the worker stopped ({worker.process.returncode})" + logs(worker)
    return None


def healthy(worker: Worker) -> None:
    """The worker runs, answers /health, no agent of it crashed, and no take failed."""
    problem = trouble(worker)
    assert problem is None, problem
    assert worker.health() == 200, logs(worker)


async def watched(worker: Worker, waiting: Awaitable[T]) -> T:
    """``waiting``'s result; fails at once if the worker gets into trouble meanwhile."""
    task = asyncio.ensure_future(waiting)
    try:
        while not task.done():
            problem = trouble(worker)
            assert problem is None, problem
            await asyncio.wait({task}, timeout=0.5)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def applied_exactly_once(broker: Broker, worker: Worker, work: Workload) -> None:
    """Every command of ``work`` has exactly the outcome the reference expects, and its
    accounts the reference balances, in the event log and in the worker's views."""
    async with EventLog(broker) as log:
        await watched(worker, log.quiesce(work.expected, timeout=SETTLE))
        problems = log.problems(work, exclusive=False)
        assert not problems, "\n".join(problems[:50]) + logs(worker)
    await check_views(worker, work.bank)


@pytest.fixture(scope="module", params=BROKER_KINDS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs on Tansu and on Kafka, a kind at a time."""
    return str(request.param)


@pytest.fixture(scope="module")
def bank(
    broker_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Worker]]:
    """The broker and the worker: on Tansu the session's, on Kafka the module's own."""
    directory = tmp_path_factory.mktemp("bank")
    with broker_and_worker(broker_kind, request, directory, KAFKA_CONFIG) as pair:
        yield pair


def sealed_settle(command_id: str, account: str, to_account: str, amount: int) -> dict[str, Any]:
    """A settle leg sealed as a worker seals it (the incident's leg was a real one)."""
    leg = {
        "type": "TRANSFER_SETTLE",
        "command_id": command_id,
        "account_id": account,
        "to_account_id": to_account,
        "amount": amount,
    }
    return leg_seal.sealed(parse_command(leg), LEG_KEY.encode())


# ----------------------------------------------------------------- the incident


@pytest.mark.timeout(600)
async def test_a_bundle_timestamped_in_year_11476_does_not_stop_the_deposits_around_it(
    bank: tuple[Any, Worker], tmp_path: Path
) -> None:
    broker, worker = bank
    prefix = f"incident-{uuid.uuid4().hex[:8]}"
    rng = random.Random(11476)
    work = Workload(prefix, rng, accounts=4, duplicate_share=0.0)
    creations, deposits = work.opening()
    burst = [work.deposit(rng.choice(work.account_ids), rng.randint(1, 1_000)) for _ in range(200)]
    first, second = work.account_ids[:2]
    leg = sealed_settle(f"{prefix}-settle", first, second, 100)
    bundle = orjson.dumps([{"timestamp": YEAR_11476, "command": leg}])
    own = partition_for(first.encode(), PARTITIONS)

    async with Producer(broker) as producer:
        await producer.send_all([*creations, *deposits])
        pending = [await producer.enqueue(cmd) for cmd in burst[:100]]
        pending.append(await producer.enqueue(bundle, key=b"", partition=own))
        pending += [await producer.enqueue(cmd) for cmd in burst[100:]]
        await producer.flushed(pending)

    await applied_exactly_once(broker, worker, work)
    healthy(worker)

    async with Client(broker) as client:
        dead = await client.read(
            "commands-dlq",
            until=lambda found: len(found) >= 1,
            where=lambda entry: leg["command_id"] in (entry.get("value") or ""),
        )
    assert [(d["reason"], d["partition"], d.get("index")) for d in dead] == [
        ("MALFORMED_COMMAND", own, 0)
    ], dead
    assert dead[0]["timestamp"] is not None, dead  # the record's own, not the item's
    await verify(broker, tmp_path / "cli", worker)


# ------------------------------------------------------------ hostile records, at random

#: Placeholders in generated JSON, replaced when a record is sent: the example's account,
#: another of its accounts, and a command id of this record's own (also as the start of
#: a string). Command ids never repeat across examples: the bank dedupes an id on its
#: account's partition only, and one id on two accounts would be the test's own doing.
ACCOUNT, OTHER, CID = "<account>", "<other>", "<command-id>"

TIMESTAMPS = st.one_of(
    st.none(),  # the producer's clock
    st.sampled_from([0, -1, INT64_MAX, YEAR_11476, 253_402_300_800_000]),
    st.integers(min_value=0, max_value=INT64_MAX),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities included: not JSON at all
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
IDS = st.sampled_from([ACCOUNT, OTHER]) | st.text(max_size=12)
#: Readable ids, ids with any characters after the prefix, ids of the wrong type.
COMMAND_IDS = st.one_of(
    st.just(CID),
    st.text(max_size=12).map(lambda suffix: CID + suffix),
    st.none(),
    st.integers(),
)
#: An amount no command can be applied with: the wrong type, or out of range.
BAD_AMOUNT = st.one_of(
    st.text(max_size=6),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.integers(max_value=0),
    st.integers(min_value=2**63),
)
COMMANDS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["DEPOSIT", "WITHDRAW", "TRANSFER_MONEY", "STEAL_MONEY", ""]),
        "command_id": COMMAND_IDS,
        "account_id": IDS,
        "amount": BAD_AMOUNT,
    },
    optional={"to_account_id": IDS, "expected_version": JSON_SCALARS},
)
LEGS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["TRANSFER_CREDIT", "TRANSFER_REFUND", "TRANSFER_SETTLE"]),
        "command_id": COMMAND_IDS,
        "account_id": IDS,
        "from_account_id": IDS,
        "to_account_id": IDS,
        "amount": st.integers(min_value=1, max_value=10**6) | BAD_AMOUNT,
        "currency": st.sampled_from(["EUR", "USD", "eur", ""]),
        "reason": st.sampled_from(["ACCOUNT_NOT_FOUND", "ACCOUNT_CLOSED", "NONE"]),
    },
    optional={"seal": st.text(max_size=30)},  # never the right one
)
ENVELOPES = st.fixed_dictionaries(
    {"timestamp": TIMESTAMPS | JSON_SCALARS, "command": LEGS | COMMANDS | JSON}
)
BUNDLES = st.lists(ENVELOPES | JSON, max_size=4)


@dataclass(frozen=True)
class Value:
    """A record value: ``kind`` says how ``data`` becomes bytes (see ``render``)."""

    kind: str
    data: Any = None

    def render(self, names: dict[str, str]) -> bytes | None:
        if self.kind == "tombstone":
            return None
        if self.kind == "bytes":
            return bytes(self.data)
        if self.kind == "huge-bytes":  # random, not JSON, not UTF-8
            return random.Random(self.data).randbytes(self.data)
        if self.kind == "huge-json":  # a command for the account, its amount a string
            padding = "x" * self.data
            bad = {"type": "DEPOSIT", "command_id": CID, "account_id": ACCOUNT, "amount": "1"}
            return json.dumps(substitute({**bad, "padding": padding}, names)).encode()
        # JSON of any shape; NaN and infinities are written as such (not JSON)
        return json.dumps(substitute(self.data, names)).encode()


def substitute(data: Any, names: dict[str, str]) -> Any:
    if isinstance(data, str):
        if data.startswith(CID):
            return names[CID] + data[len(CID) :]
        return names.get(data, data)
    if isinstance(data, list):
        return [substitute(item, names) for item in data]
    if isinstance(data, dict):
        return {name: substitute(item, names) for name, item in data.items()}
    return data


VALUES = st.one_of(
    st.just(Value("tombstone")),
    st.binary(max_size=2048).map(lambda data: Value("bytes", data)),
    st.integers(min_value=100_000, max_value=900_000).map(lambda n: Value("huge-bytes", n)),
    st.integers(min_value=100_000, max_value=900_000).map(lambda n: Value("huge-json", n)),
    JSON.map(lambda data: Value("json", data)),
    COMMANDS.map(lambda data: Value("json", data)),
    LEGS.map(lambda data: Value("json", data)),
    BUNDLES.map(lambda data: Value("json", data)),
)
#: "account": the account's own key; "huge": 60 KB; else the key as given.
KEYS = st.one_of(
    st.sampled_from(["account", None, b"", "huge"]),
    st.binary(max_size=32).map(lambda data: b"\xff" + data),  # not UTF-8
)
HEADERS = st.lists(st.tuples(st.text(max_size=16), st.binary(max_size=64)), max_size=3)


@dataclass(frozen=True)
class Hostile:
    key: Any
    value: Value
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]]
    #: Put it on the account's partition, whatever its key: it then shares takes with
    #: the deposits around it.
    on_account_partition: bool

    async def send(self, producer: Producer, account: str, names: dict[str, str]) -> None:
        key = {"account": account.encode(), "huge": b"k" * 60_000}.get(self.key, self.key)
        value = self.value.render(names)
        if key is None and value is None:
            key = b""  # aiokafka sends no record without both; the nearest it sends
        options: dict[str, Any] = {}
        if self.timestamp_ms is not None:
            options["timestamp_ms"] = self.timestamp_ms
        if self.headers:
            options["headers"] = self.headers
        if self.on_account_partition:
            options["partition"] = partition_for(account.encode(), PARTITIONS)
        await producer.send(value, key=key, **options)


HOSTILE = st.builds(
    Hostile,
    key=KEYS,
    value=VALUES,
    timestamp_ms=TIMESTAMPS,
    headers=HEADERS,
    on_account_partition=st.booleans(),
)


async def hostile_example(broker: Broker, worker: Worker, records: list[Hostile]) -> None:
    """Open two accounts; send deposit, hostile, deposit, hostile, ..., deposit; every
    deposit must be applied once and nothing else move."""
    prefix = f"hostile-{uuid.uuid4().hex[:10]}"
    work = Workload(prefix, random.Random(prefix), accounts=2, duplicate_share=0.0)
    account, other = work.account_ids
    creations, deposits = work.opening()
    async with Producer(broker) as producer:
        await producer.send_all([*creations, *deposits])
        for n, record in enumerate(records):
            names = {ACCOUNT: account, OTHER: other, CID: f"{prefix}-h{n}"}
            await record.send(producer, account, names)
            await producer.send(work.deposit(account, n + 1))
    await applied_exactly_once(broker, worker, work)
    healthy(worker)


@pytest.fixture(scope="module")
def hostile_worker(
    broker_kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One worker, on a broker of its own, for every hostile example.

    Not the session worker: a record that stops the worker (see the int64 test below)
    would take down the worker the HTTP and integration tests share, and fail them all.
    On Kafka, the worker of this module's own node (``bank``): no other module uses it.
    """
    if broker_kind == "kafka":
        _, worker = request.getfixturevalue("bank")
        yield worker
        return
    root = tmp_path_factory.mktemp("hostile")
    with Broker.start() as broker, running_workers(broker, root, {}) as [worker]:
        yield worker


@pytest.mark.timeout(900)
def test_hostile_records_cost_no_valid_command_its_outcome(
    hostile_worker: Worker, tmp_path: Path
) -> None:
    worker = hostile_worker

    # No shrinking: the examples share one worker, so once a record has stopped it every
    # later example fails too, and a shrunk example would name the wrong records.
    @hypothesis_settings(
        max_examples=15,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(records=st.lists(HOSTILE, min_size=1, max_size=4))
    def example(records: list[Hostile]) -> None:
        note(f"records: {records!r}")
        asyncio.run(hostile_example(worker.broker, worker, records))

    example()
    healthy(worker)
    asyncio.run(verify(worker.broker, tmp_path / "cli", worker))


# ------------------------------------------------------ a re-keyed record's timestamp


@pytest.mark.parametrize("timestamp_ms", [0, 1, -1])
async def test_a_command_keyed_otherwise_keeps_its_records_timestamp(
    bank: tuple[Any, Worker], timestamp_ms: int
) -> None:
    """A command keyed by something else than its account is re-keyed before it is
    applied; its ``occurred_at`` is still its record's timestamp, as when it comes keyed
    right (README: ``occurred_at`` is the command record's timestamp)."""
    broker, worker = bank
    prefix = f"rekeyed-{uuid.uuid4().hex[:8]}"
    work = Workload(prefix, random.Random(prefix), accounts=1, duplicate_share=0.0)
    [account] = work.account_ids
    opened = work.create(account)
    right = work.deposit(account, 1)
    wrong = work.deposit(account, 2)
    async with Producer(broker) as producer:
        await producer.send(opened)
        await producer.send(right, timestamp_ms=timestamp_ms)
        await producer.send(wrong, key=b"someone-else", timestamp_ms=timestamp_ms)
    async with EventLog(broker) as log:
        await watched(worker, log.quiesce(work.expected, timeout=SETTLE))
        [applied_right] = log.outcomes[right["command_id"]].values()
        [applied_wrong] = log.outcomes[wrong["command_id"]].values()
    assert applied_wrong["occurred_at"] == applied_right["occurred_at"], (
        applied_right,
        applied_wrong,
    )


# ------------------------------------------------- a timestamp at the end of int64


@pytest.mark.timeout(600)
async def test_a_command_keyed_otherwise_with_the_largest_timestamp_does_not_stop_the_worker(
    tmp_path: Path, request: pytest.FixtureRequest, broker_kind: str
) -> None:
    """A command whose record is keyed by something else than its account is re-keyed:
    put back on ``commands`` under its account, with its record's timestamp
    (``CommandProcessor.reroute``). With the timestamp 2**63 - 1 ms that copy cannot be
    produced (``int(seconds * 1000)`` rounds past the largest int64: aiokafka raises
    OverflowError), so every take holding the record fails until the worker stops, and
    after a restart again: one record from any client stops the bank. The command should
    instead be dead-lettered (its timestamp shows no date: ``MALFORMED_COMMAND``) and the
    commands around it applied. Its own broker and worker: it stops the worker."""
    work = Workload("int64", random.Random(64), accounts=2, duplicate_share=0.0)
    account = work.account_ids[0]
    creations, deposits = work.opening()
    hostile = {"type": "DEPOSIT", "command_id": "int64-hostile", "account_id": account}
    after = [work.deposit(account, n + 1) for n in range(5)]
    env = {"BANKING_TAKE_RETRY_BACKOFF": "0.05"}

    with (
        started_broker(broker_kind, request, tmp_path / "kafka", KAFKA_CONFIG) as broker,
        running_workers(broker, tmp_path, env) as [worker],
    ):
        async with Producer(broker) as producer:
            await producer.send_all([*creations, *deposits])
            await producer.send({**hostile, "amount": 5}, key=b"elsewhere", timestamp_ms=INT64_MAX)
            await producer.send_all(after)

        async with EventLog(broker) as log:
            await watched(worker, log.quiesce(work.expected, timeout=SETTLE))
            problems = log.problems(work)
            assert not problems, "\n".join(problems[:50]) + logs(worker)
            assert "int64-hostile" not in log.outcomes, log.outcomes["int64-hostile"]
        healthy(worker)
        async with Client(broker) as client:
            dead = await client.read(
                "commands-dlq",
                until=lambda found: len(found) >= 1,
                where=lambda entry: "int64-hostile" in (entry.get("value") or ""),
            )
        assert {d["reason"] for d in dead} == {"MALFORMED_COMMAND"}, dead
        await verify(broker, tmp_path / "cli", worker)
