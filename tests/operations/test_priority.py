"""A worker's CPU priority: lowered as ``BANKING_NICE`` says, and never raised."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from banking_app.operations.priority import PROCESSOR_NICENESS, PriorityError, apply, niceness


def test_by_default_no_worker_is_lowered() -> None:
    assert niceness({}) == 0
    assert niceness({"BANKING_NICE": "  "}) == 0
    assert niceness({"BANKING_NICE": str(PROCESSOR_NICENESS)}) == PROCESSOR_NICENESS


@pytest.mark.parametrize(("raw", "expected"), [("0", 0), ("19", 19), (" 5 ", 5)])
def test_the_setting_decides(raw: str, expected: int) -> None:
    assert niceness({"BANKING_NICE": raw}) == expected


@pytest.mark.parametrize("raw", ["-1", "20", "-20", "ten", "1.5", "0x5", "10; reboot", "\x00"])
def test_a_niceness_outside_0_to_19_is_refused_by_name(raw: str) -> None:
    with pytest.raises(PriorityError, match=r"^BANKING_NICE must be"):
        niceness({"BANKING_NICE": raw})


def test_a_bad_setting_stops_the_worker_naming_it() -> None:
    with pytest.raises(SystemExit, match=r"^BANKING_NICE must be"):
        apply({"BANKING_NICE": "-5"}, ["worker"])


#: Run in a process of its own: lowering the test process would slow the whole suite.
PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    from banking_app.operations.priority import apply
    started = threading.Event(); done = threading.Event()
    threading.Thread(target=lambda: (started.set(), done.wait())).start()
    started.wait()
    def nices():
        tasks = os.listdir("/proc/self/task")
        return sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in tasks})
    seen = [nices()]
    apply({"BANKING_NICE": "9"}, ["audit"])  # not a worker: left as it is
    seen.append(nices())
    apply({"BANKING_NICE": sys.argv[1]}, ["--datadir", "d", "worker"])
    seen.append(nices())
    late = []
    t = threading.Thread(target=lambda: late.append(os.getpriority(os.PRIO_PROCESS, 0)))
    t.start(); t.join()
    apply({"BANKING_NICE": "3"}, ["worker"])  # never raised back
    seen.append(nices())
    done.set()
    print(json.dumps({"seen": seen, "late": late}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread: Linux")
def test_a_worker_lowers_every_thread_and_never_raises_one() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "7"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    result = json.loads(out)
    assert result["seen"] == [[0], [0], [7], [7]]
    assert result["late"] == [7]  # a thread started later inherits it
