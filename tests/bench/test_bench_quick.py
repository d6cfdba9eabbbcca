"""The benchmark's quick mode runs end to end and reports every figure (no timing is
asserted: figures belong in docs/BENCHMARKS.md, not in tests)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("broker", ["tansu", "kafka"])
def test_quick_benchmark_measures_the_bank_and_both_baselines(
    tmp_path: Path, broker: str, request: pytest.FixtureRequest
) -> None:
    if broker == "kafka":
        request.getfixturevalue("kafka_libs")  # skipped, saying why, without Java 17
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--growth", ""),
            *("--broker", broker, "--output", str(report)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    text = report.read_text()
    for measure in (
        "deposits, full semantics",
        "cross-partition transfers",
        "baseline (a): raw aiokafka",
        "baseline (b): naive Faust agent",
        "queries during deposits",
        "CPU per deposit, the bank's processes",
        "CPU per deposit, the broker",
    ):
        row = next(line for line in text.splitlines() if measure in line)
        assert re.search(r"\d", row.split("|")[2]), row
    assert "exit 0 (0 problems)" in text  # the books balance after the load
    assert "errors of" in text


def marked_processes(mark: str) -> dict[int, str]:
    """The processes whose environment carries ``mark`` (Linux): pid → command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                command_line = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(proc.name)] = command_line.decode()
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize("after", [0.0, 2.0], ids=["as-queries-start", "mid-deposits"])
def test_a_benchmark_stopped_by_sigterm_stops_its_broker_and_workers(after: float) -> None:
    """`timeout` and CI runners stop with SIGTERM; what the run started must not outlive it
    (stray workers took CPU from later runs)."""
    mark = f"bench-sigterm-{uuid.uuid4()}"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--growth", "", "--broker", "tansu"],
        cwd=ROOT,
        env={**os.environ, "BENCH_TEST_MARK": mark},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # Mid-run: the worker is up and the deposits start, with queries alongside.
        while not any("bench.queries" in line for line in marked_processes(mark).values()):
            assert bench.poll() is None, "the benchmark ended before its deposits"
            assert time.monotonic() < deadline, "no deposits started"
            time.sleep(0.2)
        time.sleep(after)
        running = " ".join(marked_processes(mark).values())
        assert "tansu" in running and "banking_app" in running
        bench.send_signal(signal.SIGTERM)
        bench.wait(60)
        deadline = time.monotonic() + 30
        while marked_processes(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marked_processes(mark) == {}
    finally:
        bench.kill()
        for pid in marked_processes(mark):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
