"""CPU time of a process and everything it started, read from ``/proc`` (Linux).

The layouts of issue 16 are compared by CPU per deposit summed over the bank's
processes, and the broker's beside it: a rate alone hides where the two cores went.
A process's ``utime + stime`` leaves out its children (Tansu's wheel runs the broker
as a child), and its ``cutime + cstime`` holds only those it has waited for, so both are
summed over the process and every live descendant.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """The parent pid and CPU seconds of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    fields = text.rpartition(")")[2].split()
    return int(fields[1]), sum(int(ticks) for ticks in fields[11:15]) / TICKS


def tree_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by ``roots`` and their live descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = found
    wanted = {pid for pid in roots if pid in stats}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(stats[pid][1] for pid in wanted)
