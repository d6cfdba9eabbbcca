"""The embedded broker and worker subprocesses, as the tests drive them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from banking_app import embedded

READY_TIMEOUT = 90.0  # generous: CI machines are slow; the benchmark measures readiness


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"kafka://localhost:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.port}"

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Broker]:
        port = embedded.free_port()
        process = embedded.start_tansu(port)
        try:
            yield cls(port, process)
        finally:
            embedded.stop(process)


@dataclass
class Worker:
    broker: Broker
    directory: Path
    web_port: int = field(default_factory=embedded.free_port)
    partitions: int = 8
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "worker.log"

    @property
    def url(self) -> str:
        return f"http://localhost:{self.web_port}"

    def start(self, wait: bool = True) -> None:
        env = {
            **os.environ,
            "KAFKA_BROKER": self.broker.url,
            "BANKING_WEB_PORT": str(self.web_port),
            "BANKING_PARTITIONS": str(self.partitions),
            "BANKING_STORE": "rocksdb://",
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
            self.wait_ready()

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

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def command(kind: str, command_id: str, account_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "command_id": command_id, "account_id": account_id, **fields}


class Client:
    """A plain aiokafka producer and reader, as a non-Faust client would use Kafka."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

    async def __aenter__(self) -> Client:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, value: dict[str, Any] | bytes, key: bytes | str | None = "auto") -> None:
        """Produce to ``commands``; by default keyed by the command's account id."""
        if key == "auto":
            assert isinstance(value, dict)
            key = str(value["account_id"]).encode()
        payload = value if isinstance(value, bytes) else orjson.dumps(value)
        await self.producer.send_and_wait("commands", payload, key=key)

    async def read(
        self,
        topic: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60.0,
        where: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> list[dict[str, Any]]:
        """Read ``topic`` from the beginning until ``until(records)`` holds (or time out).

        Records are decoded JSON values with ``_partition``/``_offset``/``_key`` added.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic, timeout)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            found: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    for message in messages:
                        record = orjson.loads(message.value)
                        record.update(
                            _partition=tp.partition, _offset=message.offset, _key=message.key
                        )
                        if where(record):
                            found.append(record)
                if until(found):
                    return found
            raise TimeoutError(f"condition not met on {topic} after {timeout} s; saw {found}")
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return partitions
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"topic {topic} does not exist")
