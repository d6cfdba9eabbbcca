"""``banking-app dev``: a local broker and the bank's workers, as a newcomer runs the bank.

One worker of role ``all`` by default; ``--roles`` (or ``--workers N``) runs a layout of
several, each with its own web port (the first ``--web-port``, the next one up, ...)
and its own tables (``worker/``, ``worker-1/``, ...). README, "Roles and layouts".

A newcomer's accounts should survive a restart of ``dev`` as they would in production,
so Apache Kafka runs (``operations.apache_kafka``) when Java 17 is on PATH, with its
log, the worker's tables and the saga-leg key kept in one data directory. Tansu, the
fallback, keeps its topics in memory only, and a worker data directory that outlived it
would hold changelog offsets the next broker never had (Faust's ConsistencyError): with
Tansu everything is made fresh and deleted on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banking_app.operations import apache_kafka, embedded_broker

#: Where ``dev`` keeps Apache Kafka's logs, the worker's tables and the saga-leg key.
DEV_DIR = os.environ.get("BANKING_DEV_DIR") or ".banking-dev"
#: The port a new dev broker gets when none is asked for: the one ``KAFKA_BROKER``'s
#: default names, so ``create-topics``, ``replay`` and friends find it unconfigured.
DEV_BROKER_PORT = 9092
#: A Faust worker leaves its group and closes its tables before it exits; on a slow
#: machine that takes seconds, and a worker killed midway has to recover its tables.
WORKER_STOP_TIMEOUT = 30.0


#: The worker roles ``--roles`` takes (``runtime.settings.ROLES``).
ROLES = ("all", "command", "processor", "query")


class LayoutError(ValueError):
    """A ``--roles``/``--workers`` layout that cannot run a bank."""


def layout(roles: str | None, workers: int | None) -> tuple[str, ...]:
    """The roles of the workers to run: ``--roles processor,query`` or ``--workers N``
    (N workers of role ``all``); one ``all`` worker when neither is given."""
    if roles is not None and workers is not None:
        raise LayoutError("give --roles or --workers, not both")
    if workers is not None:
        if workers < 1:
            raise LayoutError("--workers must be at least 1")
        return ("all",) * workers
    if roles is None:
        return ("all",)
    chosen = tuple(part.strip().lower() for part in roles.split(",") if part.strip())
    unknown = [role for role in chosen if role not in ROLES]
    if unknown or not chosen:
        raise LayoutError(f"--roles takes a comma-separated list of {', '.join(ROLES)}")
    if not any(role in ("all", "processor") for role in chosen):
        raise LayoutError("the layout needs an event processor (processor or all)")
    if not any(role in ("all", "query") for role in chosen):
        raise LayoutError("the layout needs a query service (query or all)")
    return chosen


@dataclass(frozen=True)
class WorkerPlan:
    """One worker of a layout: its role, web port and table directory."""

    role: str
    web_port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.web_port}"


def plans(roles: tuple[str, ...], web_port: int, base: Path) -> list[WorkerPlan]:
    """The first worker keeps ``worker/`` (the single worker's, as before), the others
    ``worker-1/``, ``worker-2/``, ...; ports count up from ``web_port``."""
    return [
        WorkerPlan(role, web_port + n, base / ("worker" if n == 0 else f"worker-{n}"))
        for n, role in enumerate(roles)
    ]


def role_env(plan: WorkerPlan, layout_plans: list[WorkerPlan]) -> dict[str, str]:
    """A worker's ``BANKING_ROLE``; a command worker, in no group, is told where the
    query workers are (``BANKING_QUERY_URL``)."""
    env = {"BANKING_ROLE": plan.role}
    if plan.role == "command":
        queries = [p.url for p in layout_plans if p.role in ("all", "query")]
        env["BANKING_QUERY_URL"] = ",".join(queries)
    return env


async def run(
    broker_port: int | None,
    web_port: int,
    data_dir: Path,
    broker_kind: str,
    worker_loglevel: str,
    roles: tuple[str, ...] = ("all",),
) -> int:
    """Run a broker and the workers of ``roles`` until Ctrl-C; the exit code for ``dev``."""
    libs = await asyncio.to_thread(_kafka_jars, broker_kind)
    if isinstance(libs, str):
        print(f"dev: --broker kafka cannot run: {libs}", file=sys.stderr, flush=True)
        return 2
    if libs is None:
        return await _dev_on_tansu(broker_port or DEV_BROKER_PORT, web_port, worker_loglevel, roles)
    return await _dev_on_kafka(
        libs, data_dir.resolve(), broker_port, web_port, worker_loglevel, roles
    )


async def _start_workers(
    layout_plans: list[WorkerPlan], loglevel: str, env: dict[str, str]
) -> list[asyncio.subprocess.Process]:
    started = []
    for plan in layout_plans:
        print(f"worker ({plan.role}): {plan.url}  data: {plan.directory}", flush=True)
        worker_env = {**env, **role_env(plan, layout_plans)}
        started.append(await _start_worker(plan.directory, plan.web_port, loglevel, worker_env))
    return started


async def _first_exit(workers: list[asyncio.subprocess.Process]) -> int:
    """The exit code of the first worker to stop: ``dev`` stops with it."""
    waits = [asyncio.ensure_future(worker.wait()) for worker in workers]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for wait in waits:
            wait.cancel()


def _kafka_jars(broker_kind: str) -> Path | str | None:
    """The Kafka jars to run, fetched the first time; None for Tansu.

    With ``--broker kafka`` the reason Kafka cannot run is returned instead of falling
    back: whoever asks for Kafka by name relies on its data being kept.
    """
    if broker_kind == "tansu":
        return None
    if not apache_kafka.java_available():
        reason = "no Java 17+ runtime on PATH"
    else:
        if apache_kafka.kafka_libs() is None and not os.environ.get("KAFKA_HOME"):
            print(
                f"fetching the Apache Kafka {apache_kafka.KAFKA_VERSION} jars once "
                f"(kafka-setup/fetch.sh, into {apache_kafka.cache_dir()})...",
                flush=True,
            )
        try:
            libs = apache_kafka.ensure_kafka_libs()
        except apache_kafka.KafkaError as exc:
            reason = f"the Kafka jars could not be fetched: {exc}"
        else:
            if libs is not None:
                return libs
            home = os.environ.get("KAFKA_HOME")
            reason = (
                f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar"
                if home
                else "no Kafka jars cached and no Maven (mvn) to fetch them"
            )
    if broker_kind == "kafka":
        return reason
    print(
        f"broker: Tansu instead of Apache Kafka ({reason}); it keeps everything in "
        "memory: accounts and balances will not survive a restart of dev",
        flush=True,
    )
    return None


async def _dev_on_tansu(
    broker_port: int, web_port: int, worker_loglevel: str, roles: tuple[str, ...]
) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="banking-dev-"))
    broker = await asyncio.to_thread(
        embedded_broker.start_tansu, broker_port, workdir / "broker.log"
    )
    url = f"kafka://localhost:{broker_port}"
    print(f"broker: Tansu (memory only) at {url}", flush=True)
    env = {
        "KAFKA_BROKER": url,
        "BANKING_BROKER_KIND": "tansu",
        # The broker forgets everything on exit: a key for this run will do.
        "BANKING_LEG_KEY": os.environ.get("BANKING_LEG_KEY") or secrets.token_hex(32),
    }
    workers: list[asyncio.subprocess.Process] = []
    try:
        try:
            workers = await _start_workers(plans(roles, web_port, workdir), worker_loglevel, env)
            return await _first_exit(workers)
        finally:
            await _stop_workers(workers)
    finally:
        embedded_broker.stop(broker)
        shutil.rmtree(workdir, ignore_errors=True)
        print("stopped broker and worker; dev state removed", flush=True)


async def _dev_on_kafka(
    libs: Path,
    data_dir: Path,
    broker_port: int | None,
    web_port: int,
    worker_loglevel: str,
    roles: tuple[str, ...],
) -> int:
    """Kafka's node directory, the worker's tables and the leg key, all in ``data_dir``.

    Nothing is deleted: the broker and the worker's tables restart from where they were,
    after a Ctrl-C or a crash alike. Only a broker formatted afresh (its directory was
    deleted) takes the worker's tables with it, since their changelog offsets would
    point past the new broker's empty topics.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    layout_plans = plans(roles, web_port, data_dir)
    try:
        leg_key = os.environ.get("BANKING_LEG_KEY") or kept_leg_key(data_dir / "leg-key")
        await asyncio.to_thread(_stop_leftovers, data_dir)
        kept = _kept_port(apache_kafka.KafkaNode(data_dir / "kafka"))
        port = broker_port or kept or _default_broker_port()
        node = apache_kafka.KafkaNode(data_dir / "kafka", libs=libs, port=port)
        _check_ports_free(node, kept)
    except DevError as exc:
        print(f"dev: {exc}", file=sys.stderr, flush=True)
        return 2
    fresh = not node.formatted
    for worker_dir in sorted(data_dir.glob("worker*")) if fresh else ():
        if worker_dir.is_dir():
            shutil.rmtree(worker_dir)
            print(f"removed {worker_dir}: its broker's data is gone", flush=True)
    print(
        f"data: kept in {data_dir} across runs (broker logs, worker tables, leg key); "
        "delete it to start over",
        flush=True,
    )
    starting = asyncio.ensure_future(asyncio.to_thread(node.start))
    workers: list[asyncio.subprocess.Process] = []
    try:
        try:
            await asyncio.shield(starting)
        except apache_kafka.KafkaError as exc:
            print(f"dev: Apache Kafka did not start: {exc}", file=sys.stderr, flush=True)
            return 1
        print(
            f"broker: Apache Kafka {apache_kafka.KAFKA_VERSION} at {node.url}  "
            f"log: {node.log_path}",
            flush=True,
        )
        env = {
            "KAFKA_BROKER": node.url,
            "BANKING_BROKER_KIND": "kafka",
            "BANKING_LEG_KEY": leg_key,
        }
        workers = await _start_workers(layout_plans, worker_loglevel, env)
        _write_pids(data_dir, node, workers)
        return await _first_exit(workers)
    finally:
        await _stop_workers(workers)
        await _stop_node(node, starting)
        (data_dir / PIDS_FILE).unlink(missing_ok=True)
        print(f"stopped worker and broker; data kept in {data_dir}", flush=True)


class DevError(RuntimeError):
    """Why ``dev`` cannot start on its data directory, for the user to fix."""


def kept_leg_key(path: Path) -> str:
    """The saga-leg key of this data directory, made on first use and readable by the
    owner only: legs sealed in one run are checked with it in the next."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise DevError(
                f"{path} holds no saga-leg key of at least 32 characters; delete it to "
                "make a new one (legs in flight are then stranded)"
            ) from None
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def _kept_port(node: apache_kafka.KafkaNode) -> int | None:
    with contextlib.suppress(apache_kafka.KafkaError):
        return node.port
    return None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _default_broker_port() -> int | None:
    """9092 when it is free; else None, and the node picks a free port and keeps it."""
    return None if _listening(DEV_BROKER_PORT) else DEV_BROKER_PORT


def _check_ports_free(node: apache_kafka.KafkaNode, kept: int | None) -> None:
    """Fail before a JVM is started for a port that something else holds."""
    ports = [("broker", _kept_port(node)), ("controller", None)]
    with contextlib.suppress(apache_kafka.KafkaError):
        ports[1] = ("controller", node.controller_port)
    for role, port in ports:
        if port is not None and _listening(port):
            hint = (
                " (kept in the data directory; --broker-port moves the broker)"
                if role == "broker" and port == kept
                else ""
            )
            raise DevError(f"the {role} port {port}{hint} is in use by another process")
    if ports[0][1] is not None and ports[0][1] == ports[1][1]:
        raise DevError(f"port {ports[0][1]} is the controller's: pick another --broker-port")


#: The pids of the broker and worker a running ``dev`` started, in its data directory.
PIDS_FILE = "dev.pids"


def _write_pids(
    data_dir: Path, node: apache_kafka.KafkaNode, workers: list[asyncio.subprocess.Process]
) -> None:
    assert node.process is not None
    pids: dict[str, list[Any]] = {
        "broker": [node.process.pid, "kafka.Kafka", str(node.properties_path)],
    }
    for n, worker in enumerate(workers):
        name = "worker" if n == 0 else f"worker-{n}"
        pids[name] = [worker.pid, "banking_app", str(data_dir / name)]
    (data_dir / PIDS_FILE).write_text(json.dumps(pids) + "\n")


def _stop_leftovers(data_dir: Path) -> None:
    """Stop a worker and broker that a killed ``dev`` left running on ``data_dir``.

    The broker runs in a session of its own, so that Ctrl-C in a terminal reaches the
    worker first; a ``dev`` killed outright (SIGKILL, a closed terminal) therefore
    leaves it running, holding its port and log directory. A pid counts only while its
    command line still names this data directory.
    """
    path = data_dir / PIDS_FILE
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    workers = sorted(name for name in pids if name.startswith("worker"))
    for role in (*workers, "broker"):
        pid, *markers = pids.get(role) or [0]
        if pid and _stop_process(int(pid), markers):
            print(f"stopped the {role} (pid {pid}) an earlier dev left running", flush=True)
    path.unlink(missing_ok=True)


def _stop_process(pid: int, markers: list[str]) -> bool:
    found = subprocess.run(
        ["ps", "-p", str(pid), "-o", "args="], capture_output=True, text=True, check=False
    )
    if found.returncode != 0 or not all(marker in found.stdout for marker in markers):
        return False
    deadline = time.monotonic() + apache_kafka.STOP_TIMEOUT
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    return True


async def _start_worker(
    directory: Path, web_port: int, loglevel: str, env: dict[str, str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "banking_app",
        "--datadir",
        str(directory),
        "worker",
        "-l",
        loglevel,
        "--web-port",
        str(web_port),
        env={**os.environ, "BANKING_WEB_PORT": str(web_port), **env},
    )


async def _stop_workers(workers: list[asyncio.subprocess.Process]) -> None:
    """Stop every worker, all at once: they leave one group."""
    await asyncio.gather(*(_stop_worker(worker) for worker in workers))


async def _stop_worker(worker: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after a while or at a second Ctrl-C.

    In a terminal the worker got Ctrl-C's SIGINT itself already (it shares the
    terminal's process group); the broker runs in a session of its own and did not.
    """
    if worker.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        worker.terminate()
    try:
        await asyncio.shield(asyncio.wait_for(worker.wait(), WORKER_STOP_TIMEOUT))
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
        await asyncio.shield(worker.wait())


async def _stop_node(node: apache_kafka.KafkaNode, starting: asyncio.Future[None]) -> None:
    """A controlled shutdown once the worker is gone, so it could commit its offsets;
    SIGKILL at a second Ctrl-C. A start still under way is let finish first, or the
    JVM it launches would outlive ``dev``."""
    try:
        with contextlib.suppress(Exception):
            await asyncio.shield(starting)
        await asyncio.shield(asyncio.to_thread(node.stop))
    except asyncio.CancelledError:
        await asyncio.to_thread(node.kill)
