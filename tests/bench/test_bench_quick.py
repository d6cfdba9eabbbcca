"""The benchmark's quick mode runs end to end and reports every figure (no timing is
asserted: figures belong in docs/BENCHMARKS.md, not in tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).parents[2]


def test_quick_benchmark_measures_the_bank_and_both_baselines(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--growth", "", "--output", str(report)],
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
    ):
        row = next(line for line in text.splitlines() if measure in line)
        assert re.search(r"\d", row.split("|")[2]), row
    assert "exit 0 (0 problems)" in text  # the books balance after the load
    assert "errors of" in text
