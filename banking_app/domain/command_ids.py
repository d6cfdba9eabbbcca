"""Bank-wide command ids: the claim that decides each id once, and what a refusal looks like.

An account's state lives on ``partition(account_id)``, but whatever records a command id
must live on one partition per id, ``partition(command_id)``, or two accounts on two
partitions could each apply the same id (docs/command-ids.md). So before a public
command is decided, its id is claimed there, in the ``command-claims`` table, and the
account's partition decides the command only once the answer is back.

The claim decision keeps these invariants:

- a claim row is written once, by the first claim of its id, and never changed, so the
  answer to a claim is a function of the claim and of which claim came first: a
  redelivered claim always gets the answer it got before;
- exactly one claimant (account and position) is ever ``CLAIMED`` for an id, so a
  command id is decided at most once bank-wide;
- a claim with the first claim's fingerprint from another position (a producer retry,
  the same content) is a ``DUPLICATE``: the first outcome stands;
- any other content (another account, type or amount) is ``REUSED``, and is refused
  with ``COMMAND_ID_REUSED`` under an event id of its own: it cannot collide with the
  first use's events, nor with another refused use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from banking_app.domain import events as ev
from banking_app.domain.commands import Answer, Command
from banking_app.domain.errors import Reason

#: Where an input sits on its account's partition: (offset, index within a bundle).
Position = tuple[int, int]


def fingerprint(command: Command) -> str:
    """The command's canonical content, hashed: every field on the wire, keys sorted.

    Two sends of the same command (any field order, an optional field left out or set
    to its default) give the same fingerprint; a different account, type, amount or
    any other field gives another. 128 bits, so a collision is not a concern.
    """
    return fingerprint_of(command.to_dict())


def fingerprint_of(data: dict[str, Any]) -> str:
    """The fingerprint of a JSON object as it came: for a command that failed its checks,
    which has no canonical form. Its copies share it; a valid command under the same id
    does not (its canonical form differs from anything malformed)."""
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """A use of a command id: the content, and where the command sits on its account."""

    fingerprint: str
    account_id: str
    position: Position

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "account_id": self.account_id,
            "position": list(self.position),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        offset, index = data["position"]
        return cls(data["fingerprint"], data["account_id"], (offset, index))


def answer(stored: Claim | None, claim: Claim) -> tuple[Claim, Answer]:
    """The claim row after ``claim``, and the answer to it.

    The row returned is ``stored`` whenever there is one: the first claim stands.
    """
    if stored is None:
        return claim, Answer.CLAIMED
    if stored == claim:
        return stored, Answer.CLAIMED  # the first claim, delivered again
    if stored.fingerprint == claim.fingerprint:
        # The fingerprint covers the account, so this is the same account's same
        # command at a later position: a copy.
        return stored, Answer.DUPLICATE
    return stored, Answer.REUSED


def reused_use_id(command: Command, fingerprint: str, position: Position) -> str:
    """The id of one refused use of a command id: the id, the content and its place.

    The place is in it so that every input refused gets its own rejection: two copies of
    one reuse, sent at two positions, each have their one outcome, with their own
    ``occurred_at``, and never one event id with two contents.
    """
    offset, index = position
    return f"{command.command_id}/reused/{fingerprint}@{offset}.{index}"


def reused_rejection(
    command: Command, fingerprint: str, position: Position, occurred_at: str
) -> ev.CommandRejected:
    """The refusal of a command whose id was first used for other content.

    ``command_id`` is the id the sender chose, so it learns its outcome under it; the
    event id is that of the use (``reused_use_id``), and the read model files the
    refusal under ``events.outcome_key``, so ``GET /commands/{id}`` keeps the first use.
    """
    return ev.CommandRejected(
        event_id=ev.event_id_for(reused_use_id(command, fingerprint, position)),
        command_id=command.command_id,
        account_id=command.account_id,
        occurred_at=occurred_at,
        seq=None,
        reason=Reason.COMMAND_ID_REUSED.value,
        detail=(
            f"command id {command.command_id!r} was first used for another command "
            "(another account, type or amount); that one stands and this one is refused"
        ),
        command_type=command.type,
        command=command.to_dict(),
    )
