"""The bytes a partition may have handed over to the agents and not yet done with.

No Faust here (as in ``delivery``). Faust bounds what an agent's stream holds in
records (``stream_buffer_maxsize``, ``BANKING_STREAM_BUFFER``), not in bytes, and the
commands topic carries records of very different sizes: a command is a few hundred
bytes, a record of bundled claim or saga legs up to 256 KiB (``runtime.outbox``). After
a burst of openings the claims' bundles came in behind them, and the consumer handed
thousands of them over at once: at 1,000,000 accounts the heap in use rose by 200 MiB
in 15 seconds just as the commands topic's lag reached 0 (docs/BENCHMARKS.md). Handed
over, a record counts as consumed, so the lag read 0 while they waited.

``Window`` keeps, per partition, the bytes handed over and not yet acknowledged or let
go. At ``budget`` the partition is held (the consumer stops fetching it, as Faust does
when a stream's buffer is full) until its bytes fall to half the budget. One record is
always let through, whatever its size, so a partition is never held with nothing of it
on its way to be done with.

The invariants, property-tested in tests/runtime/test_flow.py:

- a partition's bytes are the sum of what was handed over and not yet done: never
  negative, whatever order the calls come in;
- a partition is held only while its bytes are at least half the budget, and it is
  held whenever they are at or above the budget;
- ``handed`` says "hold" only for a partition not held already, and ``done`` says
  "resume" only for one held, so each hold is followed by at most one resume.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class Window:
    """Bytes in flight per partition, within ``budget`` (0: no bound)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes: dict[Hashable, int] = {}
        self.held: set[Hashable] = set()

    def handed(self, tp: Hashable, size: int) -> bool:
        """A record of ``size`` bytes was handed over; True when ``tp`` is to be held now."""
        if not self.budget:
            return False
        total = self.bytes.get(tp, 0) + max(size, 0)
        self.bytes[tp] = total
        if total >= self.budget and tp not in self.held:
            self.held.add(tp)
            return True
        return False

    def done(self, tp: Hashable, size: int) -> bool:
        """A handed-over record was acknowledged or let go; True when ``tp`` may be
        fetched again now."""
        if not self.budget or tp not in self.bytes:
            return False
        total = max(self.bytes[tp] - max(size, 0), 0)
        self.bytes[tp] = total
        if tp in self.held and total * 2 < self.budget:
            self.held.discard(tp)
            return True
        return False

    def holds(self, tp: Hashable) -> bool:
        return tp in self.held

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked or assigned: what was in flight is gone with them."""
        for tp in tps:
            self.bytes.pop(tp, None)
            self.held.discard(tp)
