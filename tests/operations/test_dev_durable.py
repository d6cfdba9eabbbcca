"""`banking-app dev` on Apache Kafka keeps a newcomer's accounts across restarts.

Run as a newcomer runs it: ``dev`` is a real subprocess on a data directory of its
own, and the accounts are made and read over the HTTP API. After a Ctrl-C, and after
the broker and the worker were killed outright, a second ``dev`` on the same directory
finds every account and every deposit whose POST had been answered. Skipped without
Java 17, or when the Kafka jars can be neither found nor fetched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from banking_app.operations.embedded_broker import free_port

pytestmark = pytest.mark.kafka

BANKING_APP = [sys.executable, "-m", "banking_app"]
#: A first start formats the broker, creates every topic and starts the worker;
#: a start after SIGKILL recovers the broker's logs and the worker's tables. On a
#: busy two-core machine either can take minutes.
READY_TIMEOUT = 300.0
#: Ctrl-C stops the worker, then the broker with a controlled shutdown.
STOP_TIMEOUT = 120.0


# -- dev as a subprocess -----------------------------------------------------------------


@dataclass
class Dev:
    """``banking-app dev`` runs on one data directory, one after the other."""

    data_dir: Path
    logs: Path
    web_port: int = field(default_factory=free_port)
    runs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.web_port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.runs[-1][0]

    @property
    def output(self) -> str:
        return self.runs[-1][1].read_text(errors="replace")

    def start(self, *extra: str) -> None:
        """A new ``dev`` in a session of its own, so that it and its worker can be
        killed together; the leg key is left for ``dev`` to keep."""
        env = {k: v for k, v in os.environ.items() if k != "BANKING_LEG_KEY"}
        env["BANKING_STORE"] = "rocksdb://"  # the tests' memory:// keeps no tables
        log = self.logs / f"dev-{len(self.runs) + 1}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    *BANKING_APP,
                    "dev",
                    "--data-dir",
                    str(self.data_dir),
                    "--web-port",
                    str(self.web_port),
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.runs.append((process, log))

    def interrupt(self) -> int:
        """Ctrl-C to ``dev`` alone: it stops its worker, then its broker."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(STOP_TIMEOUT)

    def kill_everything(self) -> None:
        """SIGKILL ``dev`` with its worker (its process group), and the broker, which
        runs in a session of its own: nothing of it gets to shut down."""
        broker_pid = self.pids()["broker"][0]
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        os.kill(broker_pid, signal.SIGKILL)

    def pids(self) -> dict[str, list[Any]]:
        return dict(json.loads((self.data_dir / "dev.pids").read_text()))

    def left_running(self) -> list[str]:
        """Processes whose command line names this data directory: its broker, worker."""
        found = subprocess.run(
            ["pgrep", "-af", str(self.data_dir)], capture_output=True, text=True, check=False
        )
        return [line for line in found.stdout.splitlines() if "pgrep" not in line]

    def clean_up(self) -> None:
        for process, _ in self.runs:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        for line in self.left_running():
            os.kill(int(line.split()[0]), signal.SIGKILL)

    def all_output(self) -> str:
        return "\n".join(log.read_text(errors="replace") for _, log in self.runs)


@pytest.fixture
def dev(kafka_libs: Path, tmp_path: Path) -> Iterator[Dev]:
    logs = tmp_path / "logs"
    logs.mkdir()
    runner = Dev(tmp_path / "dev-data", logs)
    try:
        yield runner
    finally:
        runner.clean_up()
        deadline = time.monotonic() + 30
        while runner.left_running() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert runner.left_running() == [], "a broker or worker outlived the test"


# -- the HTTP API --------------------------------------------------------------------------


def request(
    method: str, url: str, body: dict[str, Any] | None = None, key: str | None = None
) -> tuple[int, dict[str, Any]] | None:
    """One request: its status and JSON body, or None when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError:
        return None


def post(dev: Dev, path: str, body: dict[str, Any], *, wait: bool = True) -> dict[str, Any]:
    """POST a command until the worker takes it, retried with one Idempotency-Key (the
    API applies it once): while ``dev`` starts, nothing answers or the worker says 503.
    With ``wait``, until it is accepted; without, until Kafka has it (202)."""
    key = str(uuid.uuid4())
    url = f"{dev.url}{path}" + ("?wait=true" if wait else "")
    deadline = time.monotonic() + READY_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        assert dev.process.poll() is None, f"dev exited:\n{dev.output[-4000:]}"
        answer = request("POST", url, body, key)
        if answer is not None and answer[0] == (200 if wait else 202):
            return answer[1]
        assert answer is None or answer[0] in (202, 500, 503, 504), answer
        time.sleep(1)
    raise TimeoutError(f"POST {path} never taken ({answer}):\n{dev.output[-4000:]}")


def balance_becomes(dev: Dev, account_id: str, expected: int) -> dict[str, Any]:
    """Poll the account until its balance is ``expected`` (a worker that restarted
    answers once it has recovered its tables)."""
    deadline = time.monotonic() + READY_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        assert dev.process.poll() is None, f"dev exited:\n{dev.output[-4000:]}"
        answer = request("GET", f"{dev.url}/accounts/{account_id}")
        if answer is not None and answer[0] == 200 and answer[1]["balance"] == expected:
            return answer[1]
        time.sleep(1)
    raise TimeoutError(f"balance of {account_id} not {expected}: {answer}\n{dev.output[-4000:]}")


def broker_url(output: str) -> str:
    found = re.search(r"broker: Apache Kafka \S+ at (\S+)", output)
    assert found, output[-4000:]
    return found.group(1)


# -- the tests -----------------------------------------------------------------------------


def test_accounts_survive_ctrl_c_and_a_new_dev(dev: Dev) -> None:
    broker_port = free_port()
    dev.start("--broker-port", str(broker_port))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    post(dev, "/accounts", {"account_id": account, "owner": "Dana", "currency": "EUR"})
    post(dev, f"/accounts/{account}/deposits", {"amount": 1250})
    balance_becomes(dev, account, 1250)
    first_output = dev.output
    assert f"data: kept in {dev.data_dir}" in first_output
    assert broker_url(first_output) == f"kafka://localhost:{broker_port}"
    leg_key = dev.data_dir / "leg-key"
    assert leg_key.stat().st_mode & 0o777 == 0o600
    key = leg_key.read_text().strip()
    assert len(key) >= 32

    assert dev.interrupt() == 0, dev.output[-4000:]
    assert "stopped worker and broker; data kept in" in dev.output
    assert dev.left_running() == []

    dev.start()  # no --broker-port: the data directory keeps the broker's port
    view = balance_becomes(dev, account, 1250)
    assert view["owner"] == "Dana" and view["version"] == 2
    assert broker_url(dev.output) == f"kafka://localhost:{broker_port}"
    assert leg_key.read_text().strip() == key
    post(dev, f"/accounts/{account}/deposits", {"amount": 50})
    balance_becomes(dev, account, 1300)
    assert dev.interrupt() == 0, dev.output[-4000:]


def test_nothing_answered_is_lost_when_broker_and_worker_are_killed(dev: Dev) -> None:
    dev.start("--broker-port", str(free_port()))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    post(dev, "/accounts", {"account_id": account, "owner": "Eve", "currency": "EUR"})
    post(dev, f"/accounts/{account}/deposits", {"amount": 500})
    # Answered once Kafka has the command, before the worker applied it.
    post(dev, f"/accounts/{account}/deposits", {"amount": 250}, wait=False)

    dev.kill_everything()

    dev.start()
    balance_becomes(dev, account, 750)
    post(dev, f"/accounts/{account}/deposits", {"amount": 1})
    balance_becomes(dev, account, 751)
    assert dev.interrupt() == 0, dev.output[-4000:]
    assert "ConsistencyError" not in dev.all_output()


def test_a_broker_left_running_by_a_killed_dev_is_stopped_by_the_next(dev: Dev) -> None:
    """A closed terminal or ``kill -9`` ends ``dev`` and its worker, not the broker (a
    session of its own); the next ``dev`` must not fail on its port or log directory."""
    dev.start("--broker-port", str(free_port()))
    account = f"acct-{uuid.uuid4().hex[:8]}"
    post(dev, "/accounts", {"account_id": account, "owner": "Fay", "currency": "EUR"})
    post(dev, f"/accounts/{account}/deposits", {"amount": 70})
    broker_pid = dev.pids()["broker"][0]
    os.killpg(dev.process.pid, signal.SIGKILL)
    dev.process.wait(STOP_TIMEOUT)
    assert any(line.startswith(f"{broker_pid} ") for line in dev.left_running())

    dev.start()
    balance_becomes(dev, account, 70)
    assert f"stopped the broker (pid {broker_pid})" in dev.output
    assert dev.interrupt() == 0, dev.output[-4000:]
