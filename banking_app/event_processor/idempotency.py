"""The application layer: apply one input to one account row, at most once.

No Faust here either. The Faust agent hands in the stored row, the input and its
position in the commands topic; this decides whether the input was already applied
and, if not, what to emit and what to store. See ``docs/at-least-once.md`` for why
each check exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from banking_app.domain import Account, Command, Decision, decide, evolve, parse_command
from banking_app.domain.command_ids import fingerprint, reused_rejection
from banking_app.domain.commands import Answer
from banking_app.event_processor.pending import Pending, Queue, enqueue

#: How many recent input ids each account remembers in its own row. Producer retries
#: put a duplicate a few records after the original; this window catches it even if
#: the worker died before the command-id table was written.
RECENT_WINDOW = 16


#: Where an input sits in the commands topic: its record's offset, and its index within
#: the record (a bundle of saga legs holds several inputs; any other record, one).
#: Tuples compare in that order, so a partition's inputs are totally ordered.
Position = tuple[int, int]


def as_position(value: int | list[int] | tuple[int, int]) -> Position:
    """A stored or given position: a bare offset (index 0, as earlier releases stored
    them) or an ``[offset, index]`` pair."""
    if isinstance(value, int):
        return (value, 0)
    offset, index = value
    return (offset, index)


def stored_position(position: Position) -> int | list[int]:
    """The compact stored form ``as_position`` reads back: a bare offset for index 0."""
    offset, index = position
    return offset if index == 0 else [offset, index]


@dataclass(frozen=True, slots=True)
class AccountRow:
    """The table value for one account key: its state plus the at-most-once bookkeeping.

    ``last_offset``/``last_index`` (the position of the last input taken in: applied,
    or queued in ``pending``) and ``recent`` live in the same record as the balance, so
    they are written (and lost) together with it. ``pending`` holds the inputs taken in
    and not decided yet, in partition order (``banking_app.event_processor.pending``).
    """

    account: Account | None = None
    last_offset: int = -1
    recent: tuple[str, ...] = field(default=())
    last_index: int = 0
    pending: Queue = ()

    @property
    def last_position(self) -> Position:
        return (self.last_offset, self.last_index)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "account": self.account.to_dict() if self.account else None,
            "last_offset": self.last_offset,
            "recent": list(self.recent),
        }
        if self.last_index:
            data["last_index"] = self.last_index
        if self.pending:
            data["pending"] = [entry.to_dict() for entry in self.pending]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccountRow:
        account = data.get("account")
        return cls(
            account=Account.from_dict(account) if account else None,
            last_offset=data["last_offset"],
            recent=tuple(data["recent"]),
            last_index=data.get("last_index", 0),
            pending=tuple(Pending.from_dict(entry) for entry in data.get("pending", ())),
        )


@dataclass(frozen=True, slots=True)
class Result:
    decision: Decision
    row: AccountRow
    duplicate: bool = False
    #: A redelivered input the row has applied but the command-id table has not recorded
    #: (the worker died between the two writes): record it now, or a copy arriving after
    #: the row's window of recent ids would be applied again.
    record_offset: bool = False


def is_duplicate(row: AccountRow, command: Command, at: Position, seen_at: Position | None) -> bool:
    """True when this input, or an earlier copy of it, was already applied to the row.

    ``seen_at`` is the position at which the command-id table recorded this input, if it
    did. Seen at the same position but not in the row means the row's changelog record
    was lost while the id's was kept (a recovery from changelogs cut short): the input
    must be applied again (it re-emits identical events). The opposite (row written, id
    not, the worker having died between the two writes) is caught by the row's last
    position, and ``Result.record_offset`` finishes the interrupted write.
    """
    if at <= row.last_position or command.dedupe_id in row.recent:
        return True
    return seen_at is not None and seen_at != at


def process(
    row: AccountRow | None,
    command: Command,
    offset: int | Position,
    occurred_at: str,
    seen_at: int | Position | None,
) -> Result:
    """Apply the input at ``offset`` (a bare offset or a ``Position``) to ``row``."""
    row = row or AccountRow()
    at = as_position(offset)
    seen = as_position(seen_at) if seen_at is not None else None
    if is_duplicate(row, command, at, seen):
        unrecorded = seen is None and at <= row.last_position
        return Result(Decision(), row, duplicate=True, record_offset=unrecorded)
    decision = decide(row.account, command, occurred_at)
    account = row.account
    for event in decision.events:
        account = evolve(account, event)
    recent = (*row.recent, command.dedupe_id)[-RECENT_WINDOW:]
    return Result(
        decision, replace(row, account=account, last_offset=at[0], recent=recent, last_index=at[1])
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """An input taken into its account's queue, or found to be taken in already."""

    row: AccountRow
    duplicate: bool = False
    #: as ``Result.record_offset``
    record_offset: bool = False


def admit(
    row: AccountRow | None,
    command: Command,
    at: Position,
    timestamp: float,
    seen_at: Position | None,
) -> Admission:
    """Take the input at ``at`` into the row's queue of pending inputs, at most once.

    The same checks as ``process``: an input at or before the row's last position, or
    a copy of a recent id, or of one ``command-offsets`` recorded elsewhere, is a
    duplicate. A saga leg's id is remembered as ``process`` remembers it. A public
    command's id is not: the claim decides whether its id was used before, and by
    which command (``banking_app.domain.command_ids``), so a copy and a reuse with
    other content are told apart there.
    """
    row = row or AccountRow()
    if is_duplicate(row, command, at, seen_at):
        return Admission(
            row, duplicate=True, record_offset=seen_at is None and at <= row.last_position
        )
    entry = Pending(
        command.to_dict(),
        at,
        timestamp,
        fingerprint(command) if command.public else "",
    )
    recent = row.recent if command.public else (*row.recent, command.dedupe_id)[-RECENT_WINDOW:]
    return Admission(
        replace(
            row,
            pending=enqueue(row.pending, entry),
            last_offset=at[0],
            last_index=at[1],
            recent=recent,
        )
    )


def decide_pending(
    account: Account | None, entry: Pending, occurred_at: str
) -> tuple[Command, Decision, Account | None]:
    """What a released input means for the account, and the account after it.

    A public command is decided as it always was when its id is ``CLAIMED``; a
    ``DUPLICATE`` (the same command, first used at another position) emits nothing,
    as a copy never has; a ``REUSED`` id is refused with ``COMMAND_ID_REUSED``. A saga
    leg is decided as it comes (``decide`` raises ``MalformedLeg`` for one no debit can
    have sent).
    """
    command = parse_command(entry.command)
    if entry.answer is Answer.DUPLICATE:
        decision = Decision()
    elif entry.answer is Answer.REUSED:
        refused = reused_rejection(command, entry.fingerprint, entry.position, occurred_at)
        decision = Decision([refused])
    else:
        decision = decide(account, command, occurred_at)
    for event in decision.events:
        account = evolve(account, event)
    return command, decision, account
