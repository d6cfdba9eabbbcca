"""Fault injection for the fault tests: make a step of a take fail on demand.

``BANKING_FAULTS`` lists faults, comma-separated; unset (the default), nothing fails and
the hooks cost one attribute read. Each fault is ``step@n`` (fail the n-th time the
step runs in this process, once), ``step@n+`` (the n-th time and every time after), or
``step:id`` (every time the step runs for that input id, a record that always fails).
The steps are the places where a take can break:

- ``decode``: reading a record of ``commands``;
- ``decide``: deciding one input (``step:id`` takes a command id);
- ``publish``: producing a take's events and legs, after half of them are out;
- ``flush``: the table flush, after the changelogs have the writes and before the
  local store does;
- ``project``: folding one record into the read model;
- ``restore``: writing one batch of the bulk restore (``banking_app.runtime.restore``);
  there the fault is a SIGKILL of the worker itself, as a crash mid-restore would be.

Only the fault tests set it; a worker logs every fault it injects.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger(__name__)

STEPS = frozenset({"decode", "decide", "publish", "flush", "project", "restore"})
_FAULT = re.compile(r"^(?P<step>[a-z]+)(?:@(?P<nth>[1-9][0-9]*)(?P<on>\+?)|:(?P<id>\S+))$")


class InjectedFault(RuntimeError):
    """The failure a fault hook raises."""


@dataclass(frozen=True)
class Fault:
    step: str
    nth: int | None = None
    and_after: bool = False
    input_id: str | None = None


def parse(spec: str) -> tuple[Fault, ...]:
    """``BANKING_FAULTS`` as faults; a malformed entry stops the worker at start."""
    faults = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        match = _FAULT.match(part)
        if match is None or match["step"] not in STEPS:
            raise SystemExit(f"BANKING_FAULTS: {part!r} is not step@n, step@n+ or step:id")
        nth = int(match["nth"]) if match["nth"] else None
        faults.append(Fault(match["step"], nth, match["on"] == "+", match["id"]))
    return tuple(faults)


class Faults:
    def __init__(self, faults: tuple[Fault, ...]) -> None:
        self.faults = faults
        self.active = bool(faults)
        self.runs: Counter[str] = Counter()

    def check(self, step: str, input_id: str | None = None) -> None:
        """Raise ``InjectedFault`` when a fault says this run of ``step`` fails."""
        if not self.active:
            return
        self.runs[step] += 1
        run = self.runs[step]
        for fault in self.faults:
            if fault.step != step:
                continue
            if fault.input_id is not None:
                hit = input_id == fault.input_id
            else:
                assert fault.nth is not None
                hit = run == fault.nth or (fault.and_after and run > fault.nth)
            if hit:
                log.warning("injecting a fault at %s (run %d, input %s)", step, run, input_id)
                raise InjectedFault(f"injected fault at {step}")


faults = Faults(parse(os.environ.get("BANKING_FAULTS", "")))
