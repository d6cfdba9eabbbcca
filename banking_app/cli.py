"""``banking-app``: Faust's command line for this app, plus the app's own commands.

``banking-app worker`` is the Faust worker; ``banking-app dev`` runs a broker and a
worker together; ``banking-app create-topics`` prepares a cluster.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from faust.cli import option

from banking_app import admin, embedded
from banking_app import agents as _agents  # noqa: F401  (registers the agent)
from banking_app import projections as _projections  # noqa: F401  (registers the agents)
from banking_app import web as _web  # noqa: F401  (registers the web views)
from banking_app.app import app
from banking_app.settings import settings


@app.command(
    option(
        "--broker-port",
        type=int,
        default=9092,
        show_default=True,
        help="Port of the embedded broker on localhost.",
    ),
    option(
        "--web-port",
        type=int,
        default=settings.web_port,
        show_default=True,
        help="Port of the worker's HTTP views.",
    ),
    option(
        "--loglevel",
        "worker_loglevel",
        default="info",
        show_default=True,
        help="Worker log level: crit|error|warn|info|debug.",
    ),
)
async def dev(self: object, broker_port: int, web_port: int, worker_loglevel: str) -> None:
    """Run an embedded broker and one worker until Ctrl-C; nothing is kept afterwards.

    The broker keeps everything in memory, so the worker's RocksDB directory is made
    fresh here and deleted on exit: a data dir that outlived its broker would hold
    changelog offsets the new broker never had (Faust's ConsistencyError).
    """
    workdir = Path(tempfile.mkdtemp(prefix="banking-dev-"))
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        broker = await asyncio.to_thread(embedded.start_kafka, kafka_home, broker_port, workdir)
        kind = f"Apache Kafka from {kafka_home}"
    else:
        broker = await asyncio.to_thread(embedded.start_tansu, broker_port, workdir / "broker.log")
        kind = "Tansu (memory only)"
    url = f"kafka://localhost:{broker_port}"
    print(f"broker: {kind} at {url}", flush=True)
    print(f"worker: http://localhost:{web_port}  data: {workdir / 'worker'}", flush=True)
    env = {**os.environ, "KAFKA_BROKER": url, "BANKING_WEB_PORT": str(web_port)}
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "banking_app",
        "--datadir",
        str(workdir / "worker"),
        "worker",
        "-l",
        worker_loglevel,
        "--web-port",
        str(web_port),
        env=env,
    )
    try:
        await worker.wait()
    finally:
        if worker.returncode is None:
            worker.terminate()
            try:
                await asyncio.shield(asyncio.wait_for(worker.wait(), 15))
            except (TimeoutError, asyncio.CancelledError):
                worker.kill()
        embedded.stop(broker)
        shutil.rmtree(workdir, ignore_errors=True)
        print("stopped broker and worker; dev state removed", flush=True)


@app.command(
    option("--partitions", type=int, default=settings.partitions, show_default=True),
    option(
        "--replication-factor", type=int, default=settings.replication_factor, show_default=True
    ),
)
async def create_topics(self: object, partitions: int, replication_factor: int) -> None:
    """Create commands, events and commands-dlq with their configs (existing ones are kept)."""
    for line in await admin.create_topics(settings, partitions, replication_factor):
        print(line)
