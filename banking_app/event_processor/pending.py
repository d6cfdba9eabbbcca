"""An account's pending inputs: held in partition order until each can be decided.

A public command is decided only once its command id is claimed bank-wide
(``banking_app.domain.command_ids``), and the answer comes back from another partition,
so answers for one account's commands can arrive in any order. The account's row keeps
a FIFO of its inputs not yet decided; an input is released only when it and every
input before it can be decided, so an account's inputs are still decided in the order
they sit on its partition. A saga leg needs no claim, but waits its turn behind the
commands before it.

No Faust here (as in ``idempotency``). The invariants, property-tested in
tests/event_processor/test_pending.py:

- positions in a queue strictly increase: it is the partition's order;
- ``release`` hands back a prefix of the queue, so inputs leave in that order;
- an answer is recorded once, on the one entry with its command id, position and
  fingerprint, which is waiting for it; any other (a copy, a stale answer from before a
  restart, one for an input already decided) changes nothing, so each input is
  released exactly once whatever order its answers come in and however often.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from banking_app.domain.commands import Answer

#: (offset, index within a bundle) on the account's partition, as in ``idempotency``.
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Pending:
    """One input of an account, taken in but not decided yet."""

    #: the input as ``Command.to_dict`` writes it (no seal: it was checked on arrival)
    command: dict[str, Any]
    position: Position
    #: the input record's timestamp in seconds: its events' ``occurred_at``, and the
    #: timestamp of the legs it sends
    timestamp: float
    #: a public command's fingerprint; ``""`` for a saga leg, which needs no claim
    fingerprint: str = ""
    answer: Answer | None = None

    @property
    def needs_claim(self) -> bool:
        return bool(self.fingerprint)

    @property
    def ready(self) -> bool:
        """It can be decided once every input before it is."""
        return not self.needs_claim or self.answer is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "command": self.command,
            "position": list(self.position),
            "timestamp": self.timestamp,
        }
        if self.fingerprint:
            data["fingerprint"] = self.fingerprint
        if self.answer is not None:
            data["answer"] = self.answer.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pending:
        offset, index = data["position"]
        answer = data.get("answer")
        return cls(
            command=data["command"],
            position=(offset, index),
            timestamp=data["timestamp"],
            fingerprint=data.get("fingerprint", ""),
            answer=Answer(answer) if answer is not None else None,
        )


Queue = tuple[Pending, ...]


def enqueue(queue: Queue, entry: Pending) -> Queue:
    """``queue`` with ``entry`` last; it must come after every input already in it."""
    if queue and entry.position <= queue[-1].position:
        raise ValueError(
            f"input at {entry.position} is not after the last pending one, "
            f"at {queue[-1].position}: a queue holds its partition's order"
        )
    return (*queue, entry)


def record_answer(
    queue: Queue, command_id: str, position: Position, fingerprint: str, answer: Answer
) -> Queue:
    """``queue`` with ``answer`` on the entry awaiting it; ``queue`` itself when none does."""
    for at, entry in enumerate(queue):
        if entry.position == position:
            if (
                entry.answer is not None
                or not entry.needs_claim
                or entry.fingerprint != fingerprint
                or entry.command.get("command_id") != command_id
            ):
                return queue
            return (*queue[:at], replace(entry, answer=answer), *queue[at + 1 :])
        if entry.position > position:
            break
    return queue


def release(queue: Queue) -> tuple[Queue, Queue]:
    """The entries that can be decided now (the ready prefix, in order), and the rest."""
    ready = 0
    while ready < len(queue) and queue[ready].ready:
        ready += 1
    return queue[:ready], queue[ready:]
