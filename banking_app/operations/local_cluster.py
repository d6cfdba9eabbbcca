"""Brokers and workers as local processes: for the tests and the benchmark.

``Broker.start()`` runs an embedded Tansu broker for the duration of a ``with`` block;
``Worker`` runs ``python -m banking_app worker`` as a subprocess with its own data
directory and web port, and knows when it is ready.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from banking_app.operations import embedded_broker

READY_TIMEOUT = 90.0  # generous for slow machines; the benchmark measures readiness
#: The workers this process starts seal saga legs with one key: the environment's, or
#: one made for this process (its brokers are gone when it ends, and so are their legs).
LEG_KEY = os.environ.get("BANKING_LEG_KEY") or secrets.token_hex(32)


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]
    #: What ``Worker`` tells its worker (``BANKING_BROKER_KIND``): this broker's quirks
    #: need the worker's workarounds.
    kind: ClassVar[str] = "tansu"

    @property
    def url(self) -> str:
        return f"kafka://localhost:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Broker]:
        port = embedded_broker.free_port()
        process = embedded_broker.start_tansu(port)
        try:
            yield cls(port, process)
        finally:
            embedded_broker.stop(process)


@dataclass
class Worker:
    broker: Broker
    directory: Path
    web_port: int = field(default_factory=embedded_broker.free_port)
    partitions: int = 8
    env: dict[str, str] = field(default_factory=dict)
    #: ``BANKING_ROLE``: the services this worker runs (``runtime.roles``).
    role: str = "all"
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "worker.log"

    @property
    def url(self) -> str:
        return f"http://localhost:{self.web_port}"

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT) -> None:
        """Start the worker; with ``wait``, return once it answers ``/health``, or stop it
        and raise (a worker that never got ready is not left running)."""
        env = {
            **os.environ,
            "KAFKA_BROKER": self.broker.url,
            # A broker that does not say (``apache_kafka.KafkaNode``) is a Kafka: the
            # workarounds are for Tansu alone.
            "BANKING_BROKER_KIND": getattr(self.broker, "kind", "kafka"),
            "BANKING_WEB_PORT": str(self.web_port),
            "BANKING_PARTITIONS": str(self.partitions),
            "BANKING_STORE": "rocksdb://",
            "BANKING_LEG_KEY": LEG_KEY,
            "BANKING_ROLE": self.role,
            **self.env,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 (the subprocess owns it)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "banking_app",
                "--datadir",
                str(self.directory / "data"),
                "worker",
                "-l",
                "info",
                "--web-port",
                str(self.web_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            if self.health() == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.log_tail()}")

    def health(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def peak_rss_mib(self) -> float | None:
        """The worker's peak resident memory so far (VmHWM), in MiB; Linux only."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
