"""`banking-app dev` and the operator commands, as a newcomer runs them: real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from banking_app.operations.embedded_broker import free_port
from banking_app.operations.local_cluster import Broker, Worker

pytestmark = pytest.mark.kafka
BANKING_APP = [sys.executable, "-m", "banking_app"]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "dev exited early"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError("dev never became healthy")


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BANKING_APP, *args, "--url", url], capture_output=True, text=True, timeout=120
    )


def start_dev(
    tmp_path: Path, broker_port: int, web_port: int, *options: str
) -> subprocess.Popen[str]:
    """``banking-app dev`` on Tansu, its temporary files under ``tmp_path``."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("KAFKA_HOME", None)
    return subprocess.Popen(
        [
            *BANKING_APP,
            "dev",
            "--broker",
            "tansu",
            "--broker-port",
            str(broker_port),
            "--web-port",
            str(web_port),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_dev_runs_broker_and_worker_and_operator_commands_work(tmp_path: Path) -> None:
    broker_port, web_port = free_port(), free_port()
    url = f"http://localhost:{web_port}"
    dev = start_dev(tmp_path, broker_port, web_port)
    try:
        wait_healthy(url, dev)
        account = f"acct-{uuid.uuid4().hex[:8]}"

        opened = cli(
            "open-account", "--owner", "Dana", "--currency", "EUR", "--account-id", account, url=url
        )
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert "accepted: command" in opened.stdout and account in opened.stdout

        deposited = cli("deposit", account, "1250", url=url)
        assert deposited.returncode == 0
        assert (
            "MoneyDeposited" in deposited.stdout and "balance after 1_250 EUR" in deposited.stdout
        )

        refused = cli("withdraw", account, "5000", url=url)
        assert refused.returncode == 3
        assert "rejected: INSUFFICIENT_FUNDS" in refused.stdout

        invalid = cli("open-account", "--owner", "Eve", "--currency", "eur", url=url)
        assert invalid.returncode == 1
        assert "error 400" in invalid.stdout and "currency" in invalid.stdout

        shown = cli("show", account, url=url)
        assert shown.returncode == 0
        assert re.search(r"balance\s+1_250 EUR", shown.stdout)
        assert re.search(r"version\s+2\b", shown.stdout)

        history = cli("history", account, "--all", "--limit", "1", url=url)
        assert history.returncode == 0
        lines = [line.split() for line in history.stdout.splitlines()[1:]]
        assert [(line[0], line[2]) for line in lines] == [
            ("2", "MoneyDeposited"),
            ("1", "AccountCreated"),
        ]

        missing = cli("show", "no-such-account", url=url)
        assert missing.returncode == 1 and "error 404" in missing.stdout

        # Daily limits: set, shown, enforced; a second account opened with one.
        limited = cli("set-limits", account, "--daily-withdrawal-limit", "100", url=url)
        assert limited.returncode == 0, limited.stdout + limited.stderr
        assert "LimitsSet" in limited.stdout
        over = cli("withdraw", account, "101", url=url)
        assert over.returncode == 3 and "rejected: LIMIT_EXCEEDED" in over.stdout
        shown = cli("show", account, url=url)
        assert re.search(r"withdraw\s+100 EUR a day", shown.stdout), shown.stdout
        assert re.search(r"transfer\s+no limit", shown.stdout), shown.stdout
        other = f"{account}-b"
        opened = cli(
            "open-account", "--owner", "Flo", "--currency", "EUR", "--account-id", other,
            "--daily-transfer-limit", "7", url=url,
        )  # fmt: skip
        assert opened.returncode == 0, opened.stdout + opened.stderr
        assert re.search(r"transfer\s+7 EUR a day", cli("show", other, url=url).stdout)
    finally:
        dev.send_signal(signal.SIGINT)
        out, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0
    assert "stopped broker and worker; dev state removed" in out
    data_dir = re.search(r"data: (\S+)", out)
    assert data_dir is not None
    assert not Path(data_dir.group(1)).parent.exists(), "dev state outlived the broker"
    assert not listening(broker_port) and not listening(web_port)


def free_port_pair() -> int:
    """A free port whose next port up is free too: ``dev --roles`` counts ports up."""
    while True:
        port = free_port()
        if not listening(port + 1):
            return port


def test_dev_runs_the_split_layout_behind_either_address(tmp_path: Path) -> None:
    broker_port, web_port = free_port(), free_port_pair()
    processor, query = (f"http://localhost:{port}" for port in (web_port, web_port + 1))
    dev = start_dev(tmp_path, broker_port, web_port, "--roles", "processor,query")
    try:
        wait_healthy(processor, dev)
        wait_healthy(query, dev)
        account = f"acct-{uuid.uuid4().hex[:8]}"
        # Written through the processor, which finds the query worker in its group to
        # wait for the outcome; read at once through both.
        opened = cli(
            "open-account", "--owner", "Gus", "--currency", "EUR", "--account-id", account,
            url=processor,
        )  # fmt: skip
        assert opened.returncode == 0, opened.stdout + opened.stderr
        deposited = cli("deposit", account, "700", url=query)
        assert deposited.returncode == 0, deposited.stdout + deposited.stderr
        for url in (processor, query):
            shown = cli("show", account, url=url)
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert re.search(r"balance\s+700 EUR", shown.stdout), shown.stdout
    finally:
        dev.send_signal(signal.SIGINT)
        out, _ = dev.communicate(timeout=90)
    assert dev.returncode == 0, out
    assert "worker (processor)" in out and "worker (query)" in out
    assert not listening(web_port) and not listening(web_port + 1)


def test_a_worker_that_never_gets_ready_is_stopped_not_left_running(tmp_path: Path) -> None:
    """A benchmark or test whose worker cannot start must not leave it running: stray
    workers took CPU from later benchmark runs."""
    nowhere = Broker(free_port(), None)  # type: ignore[arg-type]  # nothing listens there
    worker = Worker(nowhere, tmp_path)
    with pytest.raises(TimeoutError):
        worker.start(timeout=5)
    assert worker.process is not None
    assert worker.process.poll() is not None, "the worker was left running"
