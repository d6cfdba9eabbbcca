"""The measured scenarios. Every rate is end to end: from the first command sent until the
effect the user cares about is visible (the read model, or the baseline's output)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from banking_app.operations.apache_kafka import KAFKA_VERSION, KafkaNode
from banking_app.operations.embedded_broker import free_port
from banking_app.operations.launcher import default_loop
from banking_app.operations.local_cluster import Broker, Worker
from bench.cpu import tree_seconds
from bench.kafka import Watcher, count_reached, create_topics, produce, versions_reached
from bench.memory import PeakSampler

VIEWS = "banking-app-account-views-changelog"
PARTITIONS = 8
#: Opening 1,000,000 accounts on Apache Kafka, each id claimed bank-wide, ran past the
#: 600 s this once was (docs/BENCHMARKS.md).
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "1800"))
#: Recovering 1,000,000 accounts into an empty data dir takes about ten minutes here.
RECOVERY_TIMEOUT = float(os.environ.get("BENCH_RECOVERY_TIMEOUT", "1800"))
PREFIX = "acct-"


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Config:
    quick: bool
    accounts: int
    deposits: int
    transfers: int
    query_rate: float
    growth: list[int]
    growth_deposits: int
    trials: int = 1
    output: str = "-"
    seed: int = 7
    #: The brokers the main phase runs on, one after the other ("kafka", "tansu"); the
    #: growth runs on the first.
    brokers: list[str] = field(default_factory=lambda: ["tansu"])
    kafka_libs: Path | None = None
    #: Each trial also runs the deposits with the alert agent on and off (no query load),
    #: and reads the agent's cost per event from the worker's metrics.
    alerts_compare: bool = False
    #: Compare issue 16's layouts (``bench.layouts``) in place of the main phase.
    layouts: bool = False
    #: The growth phase's workers, by role: one worker running every role, or the
    #: split (``processor``, ``query``).
    growth_roles: tuple[str, ...] = ("all",)


#: What the workers of the benchmark run against.
AnyBroker = Broker | KafkaNode

BROKER_NAMES = {
    "kafka": f"Apache Kafka {KAFKA_VERSION} (one KRaft node, logs on disk)",
    "tansu": "Tansu (the embedded broker, memory storage)",
}


@contextlib.contextmanager
def started_broker(config: Config, kind: str, directory: Path) -> Iterator[AnyBroker]:
    """A broker of ``kind`` for as long as the block runs: Tansu, or a Kafka node whose
    log lives in ``directory``. Either serves ``url``/``bootstrap`` to the workers."""
    if kind == "tansu":
        with Broker.start() as broker:
            yield broker
    else:
        with KafkaNode(directory, libs=config.kafka_libs) as node:
            yield node


@dataclass
class Bank:
    """One broker and one worker, plus what the benchmark knows of each account's version."""

    broker: AnyBroker
    worker: Worker
    versions: dict[str, int] = field(default_factory=dict)

    async def send_and_wait(
        self, records: list[tuple[str, dict[str, Any]]], bumps: dict[str, int]
    ) -> float:
        """Send commands; seconds until the read model shows every expected version."""
        for account, count in bumps.items():
            self.versions[account] = self.versions.get(account, 0) + count
        expected = {account: self.versions[account] for account in bumps}
        watcher = Watcher(self.broker.bootstrap, VIEWS, versions_reached(expected))
        await watcher.start()
        started = await produce(
            self.broker.bootstrap,
            "commands",
            [(account.encode(), orjson.dumps(body)) for account, body in records],
        )
        log(f"sent {len(records)} commands in {time.perf_counter() - started:.1f} s")
        seconds = await watcher.wait(TIMEOUT) - started
        log(f"  visible in the read model after {seconds:.1f} s")
        return seconds


def account(index: int) -> str:
    return f"{PREFIX}{index:07d}"


async def open_accounts(bank: Bank, count: int, run: str) -> float:
    records = [
        (
            account(i),
            {
                "type": "CREATE_ACCOUNT",
                "command_id": f"{run}-open-{i}",
                "account_id": account(i),
                "owner": f"owner {i}",
                "currency": "EUR",
                # a generous overdraft: no transfer is refused, so every one counts
                "overdraft_limit": 10**12,
            },
        )
        for i in range(count)
    ]
    seconds = await bank.send_and_wait(records, {a: 1 for a, _ in records})
    return count / seconds


async def deposits(bank: Bank, accounts: int, n: int, run: str, rng: random.Random) -> float:
    records, bumps = [], {}
    for i in range(n):
        target = account(rng.randrange(accounts))
        records.append(
            (
                target,
                {
                    "type": "DEPOSIT",
                    "command_id": f"{run}-dep-{i}",
                    "account_id": target,
                    "amount": rng.randint(100, 10_000),
                },
            )
        )
        bumps[target] = bumps.get(target, 0) + 1
    return n / await bank.send_and_wait(records, bumps)


async def transfers(bank: Bank, accounts: int, n: int, run: str, rng: random.Random) -> float:
    records, bumps = [], {}
    for i in range(n):
        source, target = rng.sample(range(accounts), 2)
        src, dst = account(source), account(target)
        records.append(
            (
                src,
                {
                    "type": "TRANSFER_MONEY",
                    "command_id": f"{run}-tr-{i}",
                    "account_id": src,
                    "to_account_id": dst,
                    "amount": 1,
                },
            )
        )
        bumps[src] = bumps.get(src, 0) + 1  # TransferDebited
        bumps[dst] = bumps.get(dst, 0) + 1  # TransferCredited: the transfer's outcome
    return n / await bank.send_and_wait(records, bumps)


class QueryLoad:
    """``bench/queries.py`` in its own process, for the duration of a ``with`` block."""

    def __init__(self, url: str, rate: float, accounts: int) -> None:
        self.args = [sys.executable, "-m", "bench.queries", url, str(rate), str(accounts), PREFIX]
        self.result: dict[str, Any] = {}

    def __enter__(self) -> QueryLoad:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # Wait for its "ready": a SIGTERM before it handles one would lose the run.
            assert self.process.stderr is not None
            if self.process.stderr.readline().strip() != "ready":
                raise RuntimeError(f"the query load did not start: {self.process.communicate()}")
        except BaseException:  # stopped before the block began: __exit__ will not run
            self.process.kill()
            self.process.wait()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        self.result = json.loads(out)

    def summary(self) -> dict[str, float]:
        latencies = sorted(self.result["latencies"])
        if not latencies:
            return {"requests": 0, "errors": self.result["errors"]}
        return {
            "requests": len(latencies),
            "errors": self.result["errors"],
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max_ms": 1000 * latencies[-1],
        }


def start_bank(broker: AnyBroker, directory: Path) -> Bank:
    worker = Worker(broker, directory, partitions=PARTITIONS, env={"BANKING_STORE": "rocksdb://"})
    worker.directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    worker.start()
    bank = Bank(broker, worker)
    bank.ready_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return bank


def same_loop_env(**extra: str) -> dict[str, str]:
    """A baseline's environment, on the event loop the bank's worker chooses (uvloop
    when installed), so a ratio compares the code and not the loop."""
    env = {**os.environ, **extra}
    default_loop(env, [])
    return env


async def raw_baseline(broker: AnyBroker, n: int, run: str = "") -> float:
    """Baseline (a): aiokafka consume → produce one event per command, no state."""
    source, target = f"raw-commands{run}", f"raw-events{run}"
    await create_topics(broker.bootstrap, [source, target], PARTITIONS)
    loop = subprocess.Popen(
        [sys.executable, "-m", "bench.raw_loop", broker.bootstrap, source, target],
        env=same_loop_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout is not None
        loop.stdout.readline()  # "ready"
        await asyncio.sleep(1)  # let its consumer group settle
        return n / await _timed(broker, source, target, n)
    finally:
        loop.terminate()
        loop.wait(30)


async def naive_baseline(broker: AnyBroker, n: int, directory: Path, run: str = "") -> float:
    """Baseline (b): a Faust agent doing ``table[account] += amount`` and one send."""
    rate, _ = await naive_run(broker, n, directory, run)
    return rate


async def naive_run(
    broker: AnyBroker, n: int, directory: Path, run: str = ""
) -> tuple[float, float]:
    """Baseline (b)'s rate, and the µs of CPU its worker spent per record: Faust's
    floor for one agent step with a table write and a send, on this machine."""
    source, target = f"naive-commands{run}", f"naive-events{run}"
    await create_topics(broker.bootstrap, [source, target], PARTITIONS)
    env = same_loop_env(
        BENCH_RUN=run,
        KAFKA_BROKER=broker.url,
        BENCH_DATADIR=str(directory),
        BENCH_WEB_PORT=str(free_port()),
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.naive_app", "worker", "-l", "warn"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _timed(broker, source, target, 1)  # warm up: group joined
        before = tree_seconds([worker.pid])
        rate = n / await _timed(broker, source, target, n)
        return rate, 1e6 * (tree_seconds([worker.pid]) - before) / n
    finally:
        worker.terminate()
        worker.wait(30)


async def _timed(broker: AnyBroker, source: str, target: str, n: int) -> float:
    watcher = Watcher(broker.bootstrap, target, count_reached(n))
    await watcher.start()
    records = [
        (
            account(i % 1000).encode(),
            orjson.dumps(
                {
                    "type": "DEPOSIT",
                    "command_id": f"b-{i}",
                    "account_id": account(i % 1000),
                    "amount": 1,
                }
            ),
        )
        for i in range(n)
    ]
    started = await produce(broker.bootstrap, source, records)
    return await watcher.wait(TIMEOUT) - started


def cpu_seconds(bank: Bank) -> tuple[float, float]:
    """CPU seconds so far of the bank's worker and of the broker, children included."""
    worker, broker = bank.worker.process, bank.broker.process
    return (
        tree_seconds([worker.pid]) if worker is not None else 0.0,
        tree_seconds([broker.pid]) if broker is not None else 0.0,
    )


def cpu_per_op(before: tuple[float, float], after: tuple[float, float], n: int) -> dict[str, float]:
    """µs of CPU per operation between two readings of (bank, broker) CPU seconds."""
    return {part: 1e6 * (after[i] - before[i]) / n for i, part in enumerate(("bank", "broker"))}


#: The roles whose workers answer reads from a read model of their own.
READERS = ("all", "query")


def role_workers(broker: AnyBroker, directory: Path, roles: tuple[str, ...]) -> list[Worker]:
    """A layout's workers, one per role, each in a data dir of its own (not started)."""
    workers = [
        Worker(
            broker,
            directory / f"{role}-{index}" if len(roles) > 1 else directory,
            partitions=PARTITIONS,
            env={"BANKING_STORE": "rocksdb://"},
            role=role,
        )
        for index, role in enumerate(roles)
    ]
    for worker in workers:
        worker.directory.mkdir(parents=True, exist_ok=True)
    return workers


def started_together(workers: list[Worker]) -> float:
    """Start every worker at once; seconds until the last answers ``/health``."""
    started = time.perf_counter()
    for worker in workers:
        worker.start(wait=False)
    for worker in workers:
        worker.wait_ready(RECOVERY_TIMEOUT)
    return time.perf_counter() - started


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


async def growth(config: Config, size: int, root: Path, rng: random.Random) -> dict[str, Any]:
    """``size`` accounts opened, then deposits under the query load, on the layout
    ``config.growth_roles``; then recovery into empty data dirs and a restart."""
    roles = config.growth_roles
    readers = [index for index, role in enumerate(roles) if role in READERS]
    with started_broker(config, config.brokers[0], root / f"kafka-growth-{size}") as broker:
        workers = role_workers(broker, root / f"growth-{size}", roles)
        try:
            started_together(workers)
            bank = Bank(broker, workers[0])
            samplers = [PeakSampler(worker.url) for worker in workers]
            with contextlib.ExitStack() as sampling:
                for sampler in samplers:
                    sampling.enter_context(sampler)
                opened = await open_accounts(bank, size, f"g{size}")
                urls = ",".join(workers[index].url for index in readers)
                with QueryLoad(urls, config.query_rate, size) as load:
                    rate = await deposits(bank, size, config.growth_deposits, f"g{size}", rng)
            peaks = [worker.peak_rss_mib() or 0.0 for worker in workers]
            stop_all(workers)
            # Recovery: new workers with empty data dirs rebuild every table from its
            # changelog; a restart on the same dirs reads only what they lack.
            fresh = role_workers(broker, root / f"growth-{size}-fresh", roles)
            try:
                from_changelogs = started_together(fresh)
                fresh_rss = [worker.peak_rss_mib() or 0.0 for worker in fresh]
            finally:
                stop_all(fresh)
            same_dir = started_together(workers)
        finally:
            stop_all(workers)
    return {
        "accounts": size,
        "roles": list(roles),
        "open_per_s": opened,
        "deposits_per_s": rate,
        "queries": load.summary(),
        "recovery_fresh_s": from_changelogs,
        "restart_same_dir_s": same_dir,
        "peak_rss_mib": sum(peaks),
        "peak_rss_by_worker_mib": peaks,
        "memory_at_peak": samplers[0].peak,
        "memory_at_peak_by_worker": [sampler.peak for sampler in samplers],
        "recovered_rss_mib": sum(fresh_rss),
        "recovered_rss_by_worker_mib": fresh_rss,
    }


def alert_counters(worker: Worker) -> tuple[float, float]:
    """The alert agent's seconds and events so far (``banking_alert_*`` in /metrics)."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {"banking_alert_seconds_total": 0.0, "banking_alert_events_total": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["banking_alert_seconds_total"], found["banking_alert_events_total"]


async def alerts_on_and_off(
    config: Config, bank: Bank, rng: random.Random, index: int
) -> dict[str, Any]:
    """The deposits with the alert agent on and off (``BANKING_ALERTS``), without the
    query load, one after the other on the same worker and data dir; odd trials start
    with it on, even ones off, so a drift of the machine's speed reaches both. The cost
    per event is what the agent's own counters say it spent on the "on" run's events.
    The restart between costs no measured time: each rate starts at its first send."""
    results: dict[str, Any] = {}
    order = ["on", "off"] if index % 2 else ["off", "on"]
    for mode in order:
        bank.worker.stop()
        bank.worker.env["BANKING_ALERTS"] = "1" if mode == "on" else "0"
        bank.worker.start()
        before = alert_counters(bank.worker)
        rate = await deposits(bank, config.accounts, config.deposits, f"a{index}{mode}", rng)
        results[f"deposits_alerts_{mode}_per_s"] = rate
        if mode == "on":
            after = alert_counters(bank.worker)
            seconds, events = after[0] - before[0], after[1] - before[1]
            results["alert_us_per_event"] = 1e6 * seconds / events if events else None
    bank.worker.stop()
    bank.worker.env.pop("BANKING_ALERTS", None)
    bank.worker.start()
    return results


async def trial(
    config: Config, bank: Bank, root: Path, rng: random.Random, index: int
) -> dict[str, Any]:
    """One trial of the main phase: deposits under the query load and transfers on the
    bank, then both baselines with the bank's worker stopped (it would take their CPU)."""
    run = f"m{index}"
    if bank.worker.process is None or bank.worker.process.poll() is not None:
        bank.worker.start()  # a restart on the same data dir
    try:
        with QueryLoad(bank.worker.url, config.query_rate, config.accounts) as load:
            before = cpu_seconds(bank)
            deposits_per_s = await deposits(bank, config.accounts, config.deposits, run, rng)
            after = cpu_seconds(bank)
        transfers_per_s = await transfers(bank, config.accounts, config.transfers, run, rng)
        rss = bank.worker.peak_rss_mib()
        compared = (
            await alerts_on_and_off(config, bank, rng, index) if config.alerts_compare else {}
        )
    finally:
        bank.worker.stop()
    return {
        **compared,
        "deposits_per_s": deposits_per_s,
        # µs of CPU per deposit while the deposits ran, queries served included.
        "deposit_cpu_us": cpu_per_op(before, after, config.deposits),
        "queries": load.summary(),
        "transfers_per_s": transfers_per_s,
        "peak_rss_mib": rss,
        "raw_per_s": await raw_baseline(bank.broker, config.deposits, f"-{index}"),
        "naive_per_s": await naive_baseline(
            bank.broker, config.deposits, root / f"naive-{index}", f"-{index}"
        ),
    }


async def run_all(config: Config) -> dict[str, Any]:
    rng = random.Random(config.seed)
    results: dict[str, Any] = {"brokers": {}}
    with tempfile.TemporaryDirectory(prefix="banking-bench-") as tmp:
        root = Path(tmp)
        if config.layouts:
            from bench import layouts  # it builds on this module

            results["layouts"] = await layouts.compare(config, config.brokers[0], root, rng)
        for kind in config.brokers if not config.layouts else ():
            log(f"main phase on {BROKER_NAMES[kind]}")
            results["brokers"][kind] = await main_phase(config, kind, root / kind, rng)
        results["growth"] = [await growth(config, size, root, rng) for size in config.growth]
    return results


async def main_phase(config: Config, kind: str, root: Path, rng: random.Random) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with started_broker(config, kind, root / "kafka") as broker:
        bank = start_bank(broker, root / "main")
        try:
            results["ready_s"] = bank.ready_seconds  # type: ignore[attr-defined]
            results["open_per_s"] = await open_accounts(bank, config.accounts, "m")
            # Trials alternate the bank and the baselines, so a drift in the machine's
            # speed reaches both, and the median of each is reported.
            results["trials"] = [
                await trial(config, bank, root, rng, index) for index in range(1, config.trials + 1)
            ]
            bank.worker.start()  # finishes the legs of the last transfers
            results["verify"] = _verify(broker)
        finally:
            bank.worker.stop()
    return results


def _verify(broker: AnyBroker, attempts: int = 5) -> str:
    """The books after the load: ``replay --verify`` must find nothing wrong.

    Settle legs may still be on their way when the last credit is visible, so a
    difference is given a few seconds to disappear before it is reported.
    """
    env = {**os.environ, "KAFKA_BROKER": broker.url}
    for _ in range(attempts):
        done = subprocess.run(
            [sys.executable, "-m", "banking_app", "replay", "--verify"],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if done.returncode == 0:
            break
        time.sleep(2)
    problems = [line for line in done.stdout.splitlines() if line.startswith("problems")]
    return f"exit {done.returncode} ({problems[0].split()[-1] if problems else '?'} problems)"
