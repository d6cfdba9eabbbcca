"""In-order delivery of a partition's records to the agents: never a skip, never a jump.

No Faust here. ``banking_app.runtime.transport`` asks ``Cursors`` about every record the Kafka
consumer hands over from a topic whose offsets it commits, and delivers, skips or seeks
back as told.

Why it exists: the command side treats an input at or below an account's
``last_offset`` as already applied (``event_processor.idempotency``), and the
projections step over an event whose seq they have seen. Both are right only if each partition's
records reach them in offset order with none left out. Faust's consumer does not
promise that around a rebalance: records fetched before recovery seeks the partitions
back to their committed offsets can still arrive after the seek (stale, ahead of the
re-read), it drops a re-read record as "already read" when such a stale record moved
its read offset, and it books any jump in offsets as a gap that later commits go past.
Commands were lost that way after a restart or a takeover.

The rule here: remember, per partition, the next offset owed to the agents (set by
every seek, then advanced by every delivery). A record at it is delivered; a record
below it is delivered again (a redelivery, which the idempotent agents ignore); a record
above it means something in between was not delivered, so it is skipped and the
partition is sought back to the owed offset. Stale records that keep arriving after
such a seek are skipped quietly until the owed one comes.

A partition whose owed offset has not moved for ``patience`` seconds while the consumer
has read past it is sought back to it: seen under load, a seek made while the consumer
thread is fetching can be lost, and records handed over while the flow was suspended
(a rebalance beginning) are read again only if the seek back to the committed offset
takes. Before that, the broker's first offset is asked for: if the log no longer starts
at or below the owed offset (retention deleted records never read), the owed offset
moves up to the log's start, with a warning naming what was lost. Offsets that hold no
readable record (a transaction's commit or abort marker; an aborted transaction's
records, which a ``read_committed`` consumer never sees) are stepped over once the
broker says so (``invisible``: the consumer asks a probe where the next readable record
is). Any other hole is never stepped over.

Handing a record over is not handling it. Between the consumer and an agent's take a
record can still be let go unhandled: a take abandoned while the worker stops or
rebalances, a take the agent was holding when it crashed and Faust restarted it.
Records behind it are already on their way, and an agent that handled them first
would put later positions in the accounts' rows, so the let-go records, read again,
would look applied: lost, with their offsets committed. So there is a second cursor,
the next offset the agents may *take* (``admit``): a record above it is refused at the
take, and ``rewind`` moves both cursors back to the first record let go, so the
consumer seeks back to it and nothing above it is taken first.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import Enum

#: Seconds an owed offset may stay unmoved, with the consumer past it, before a seek.
PATIENCE = 5.0


class Action(Enum):
    DELIVER = "deliver"
    SKIP = "skip"
    #: Skip this record and seek the partition back to ``Verdict.offset``.
    SEEK = "seek"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    #: For ``SEEK``: where to.
    offset: int | None = None


DELIVER = Verdict(Action.DELIVER)
SKIP = Verdict(Action.SKIP)


class Cursors:
    """The next owed offset of every partition, when it last moved, and the seeks back
    in progress."""

    def __init__(self, patience: float = PATIENCE) -> None:
        self.patience = patience
        self._owed: dict[Hashable, int] = {}
        self._moved: dict[Hashable, float] = {}
        #: Partitions sought back by ``Action.SEEK`` (or by ``stalled``'s caller).
        self._seeking: set[Hashable] = set()
        #: The next offset of each partition the agents may take (``admit``).
        self._admitted: dict[Hashable, int] = {}
        #: Offsets the broker holds no readable record at (``invisible``): start → end.
        self._invisible: dict[Hashable, dict[int, int]] = {}

    def owed(self, tp: Hashable) -> int | None:
        return self._owed.get(tp)

    def sought(self, tp: Hashable, offset: int | None, now: float) -> None:
        """The consumer sought the partition to ``offset``. ``None`` (no offset known)
        leaves nothing owed, and so nothing delivered, until a seek to a known offset:
        taking "whatever record comes first" as the start let a record far ahead in
        (a leg the worker had just sent itself, when the committed offset could not be
        read), and the account's earlier inputs then looked applied."""
        self._seeking.discard(tp)
        if offset is None or offset < 0:
            self._owed.pop(tp, None)
            self._moved.pop(tp, None)
            self._admitted.pop(tp, None)
        else:
            self._owed[tp] = offset
            self._moved[tp] = now
            self._admitted[tp] = offset

    def seeking_back(self, tp: Hashable, now: float) -> None:
        """The partition is being sought back to its owed offset; records above it are
        stale until the owed one comes."""
        self._seeking.add(tp)
        self._moved[tp] = now

    def idle(self, tp: Hashable, now: float) -> None:
        """The consumer has read nothing past the owed offset: nothing is late."""
        if tp in self._owed:
            self._moved[tp] = now

    def forget(self, tps: Iterable[Hashable]) -> None:
        """The partitions were revoked or newly assigned: nothing is owed until a seek."""
        for tp in tps:
            self._owed.pop(tp, None)
            self._moved.pop(tp, None)
            self._seeking.discard(tp)
            self._admitted.pop(tp, None)
            self._invisible.pop(tp, None)

    def on_record(self, tp: Hashable, offset: int, now: float) -> Verdict:
        owed = self._owed.get(tp)
        if owed is None:
            # Assigned, but not yet sought: where this partition starts is not known, so
            # no record of it is known to be next. Skipped; the seek that follows every
            # assignment says where to start, and the consumer reads again from there.
            return SKIP
        if offset > owed:
            owed = self._owed[tp] = self._past_invisible(tp, owed)
        if offset == owed:
            self._owed[tp] = offset + 1
            self._moved[tp] = now
            self._seeking.discard(tp)
            return DELIVER
        if offset < owed:
            return DELIVER
        if tp in self._seeking:
            return SKIP
        return Verdict(Action.SEEK, owed)

    def invisible(self, tp: Hashable, start: int, end: int, now: float) -> bool:
        """The broker says no record can be read from ``start`` up to ``end``: a
        transaction's commit or abort marker, or records of an aborted transaction that
        a ``read_committed`` consumer never sees. Kafka's consumer steps over them, so
        an offset jump across them is not a record left out: the cursors step over
        them too. True when this moved the owed offset."""
        if end <= start:
            return False
        ranges = self._invisible.setdefault(tp, {})
        passed = min(self._owed.get(tp, start), self._admitted.get(tp, start))
        for old_start in [s for s, e in ranges.items() if e <= passed]:
            del ranges[old_start]  # both cursors are past it
        ranges[start] = end
        if self._owed.get(tp) != start:
            return False
        self._owed[tp] = end
        self._moved[tp] = now
        return True

    def _past_invisible(self, tp: Hashable, offset: int) -> int:
        """``offset``, or the end of the invisible ranges that start there."""
        ranges = self._invisible.get(tp)
        while ranges and offset in ranges:
            offset = ranges[offset]
        return offset

    def admit(self, tp: Hashable, offset: int, now: float) -> bool:
        """May an agent take this handed-over record? Yes at the next offset to take or
        below it (a redelivery); above it, something handed over before it was let go
        unhandled: refused, and the partition is owed again from there (``rewind``)."""
        admitted = self._admitted.get(tp)
        if admitted is not None and offset > admitted:
            admitted = self._admitted[tp] = self._past_invisible(tp, admitted)
        if admitted is None or offset == admitted:
            self._admitted[tp] = offset + 1
            return True
        if offset < admitted:
            return True
        self.rewind(tp, admitted, now)
        return False

    def rewind(self, tp: Hashable, offset: int, now: float) -> None:
        """Records from ``offset`` on were handed over but let go unhandled: owe them
        again. The next record above the owed offset makes the consumer seek back, or
        ``stalled`` does when none comes."""
        admitted = self._admitted.get(tp)
        if admitted is None or offset < admitted:
            self._admitted[tp] = offset
        owed = self._owed.get(tp)
        if owed is None or offset < owed:
            self._owed[tp] = offset
            self._moved[tp] = now
            self._seeking.discard(tp)

    def stalled(self, now: float) -> list[tuple[Hashable, int]]:
        """Partitions whose owed offset has not moved for ``patience`` seconds, with it:
        the caller asks the consumer's position, and seeks back if it is past."""
        return [
            (tp, self._owed[tp])
            for tp, since in self._moved.items()
            if now - since >= self.patience
        ]

    def log_starts_at(self, tp: Hashable, log_start: int | None) -> range | None:
        """The broker says the partition's log starts at ``log_start``: when that is past
        the owed offset, what lies between is gone; it is returned, and no longer owed."""
        owed = self._owed.get(tp)
        if owed is None or log_start is None or log_start <= owed:
            return None
        self._owed[tp] = log_start
        if self._admitted.get(tp, log_start) < log_start:
            self._admitted[tp] = log_start
        return range(owed, log_start)
