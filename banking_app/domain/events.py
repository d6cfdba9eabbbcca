"""Events: facts in the past tense, the only source of truth.

Every event that changes an account carries its ``seq`` (1, 2, 3 … per account; the
account's version is its last seq). ``CommandRejected`` and ``TransferSettled`` change
no balance and carry no seq. Ids are derived from the command id and the saga leg,
never drawn at random, so a reprocessed command yields the same event id.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Any, ClassVar

from banking_app.domain.errors import Reason
from banking_app.domain.limits import LIMIT_NAMES

SCHEMA_VERSION = 2
# A fixed namespace so event ids are stable across processes, machines and releases.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3d1e-8a4c-4f43-9a55-6b2a3c1d9e70")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id_for(dedupe_id: str) -> str:
    """The id of the one event a command (or a saga leg of it) ends in.

    ``str(uuid.uuid5(EVENT_ID_NAMESPACE, dedupe_id))``, computed without the two UUID
    objects the standard library makes on the way (a tenth of the domain's time).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + dedupe_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Event:
    type: ClassVar[str]
    #: True for the events that move money; used by ledger checks and projections.
    moves_money: ClassVar[bool] = False
    #: Fields left out of the wire form when ``None`` (added after events were written
    #: without them; an event without them reads back the same).
    optional: ClassVar[tuple[str, ...]] = ()

    event_id: str
    command_id: str
    account_id: str
    occurred_at: str
    seq: int | None

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy showed in the worker's profile, and the
        # only non-scalar field (CommandRejected.command) is never mutated.
        data: dict[str, Any] = {"type": self.type, "schema_version": SCHEMA_VERSION}
        for name in _field_names(type(self)):
            data[name] = getattr(self, name)
        if data["seq"] is None:
            del data["seq"]
        for name in self.optional:
            if data[name] is None:
                del data[name]
        return data


@dataclass(frozen=True, slots=True)
class AccountCreated(Event):
    type: ClassVar[str] = "AccountCreated"
    optional: ClassVar[tuple[str, ...]] = LIMIT_NAMES
    owner: str
    currency: str
    overdraft_limit: int
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None


@dataclass(frozen=True, slots=True)
class MoneyDeposited(Event):
    type: ClassVar[str] = "MoneyDeposited"
    moves_money: ClassVar[bool] = True
    amount: int
    balance: int
    currency: str


@dataclass(frozen=True, slots=True)
class MoneyWithdrawn(Event):
    type: ClassVar[str] = "MoneyWithdrawn"
    moves_money: ClassVar[bool] = True
    amount: int
    balance: int
    currency: str


@dataclass(frozen=True, slots=True)
class TransferDebited(Event):
    type: ClassVar[str] = "TransferDebited"
    moves_money: ClassVar[bool] = True
    transfer_id: str
    to_account_id: str
    amount: int
    balance: int
    currency: str


@dataclass(frozen=True, slots=True)
class TransferCredited(Event):
    type: ClassVar[str] = "TransferCredited"
    moves_money: ClassVar[bool] = True
    transfer_id: str
    from_account_id: str
    amount: int
    balance: int
    currency: str


@dataclass(frozen=True, slots=True)
class TransferRefunded(Event):
    type: ClassVar[str] = "TransferRefunded"
    moves_money: ClassVar[bool] = True
    transfer_id: str
    to_account_id: str
    amount: int
    balance: int
    currency: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransferSettled(Event):
    """The credit leg succeeded: the source's money is no longer in flight."""

    type: ClassVar[str] = "TransferSettled"
    transfer_id: str
    to_account_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class AccountClosed(Event):
    type: ClassVar[str] = "AccountClosed"


@dataclass(frozen=True, slots=True)
class LimitsSet(Event):
    """The account's daily limits are now these (``None``, left out: no limit)."""

    type: ClassVar[str] = "LimitsSet"
    optional: ClassVar[tuple[str, ...]] = LIMIT_NAMES
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None


@dataclass(frozen=True, slots=True)
class CommandRejected(Event):
    type: ClassVar[str] = "CommandRejected"
    reason: str
    detail: str
    command_type: str
    command: dict[str, Any]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        AccountCreated,
        MoneyDeposited,
        MoneyWithdrawn,
        TransferDebited,
        TransferCredited,
        TransferRefunded,
        TransferSettled,
        AccountClosed,
        LimitsSet,
        CommandRejected,
    )
}
#: Events that end a command: exactly one of these exists per public command id.
TERMINAL_TYPES = frozenset(
    {
        "AccountCreated",
        "MoneyDeposited",
        "MoneyWithdrawn",
        "TransferCredited",
        "TransferRefunded",
        "AccountClosed",
        "LimitsSet",
        "CommandRejected",
    }
)


def outcome_key(event: Event) -> str:
    """The use of a command id that ``event`` is the outcome of.

    The command id, except for a ``COMMAND_ID_REUSED`` refusal: that is filed under its
    own use (the id and its event id), so the first use keeps the bare id, in the
    ``command-outcomes`` table (``GET /commands/{id}``) and in the ledger alike.
    """
    if isinstance(event, CommandRejected) and event.reason == Reason.COMMAND_ID_REUSED:
        return f"{event.command_id}/reused/{event.event_id}"
    return event.command_id


def upcast(data: dict[str, Any]) -> dict[str, Any]:
    """Bring an event written by an older release up to ``SCHEMA_VERSION``.

    v1 events had no ``occurred_at`` and no ``currency`` on money events; the epoch
    and an empty currency stand in for what was never recorded, rather than guesses.
    """
    version = data.get("schema_version", 1)
    if version < 2:
        data = {"occurred_at": "1970-01-01T00:00:00.000Z", **data}
        if data.get("type") in {
            "MoneyDeposited",
            "MoneyWithdrawn",
            "TransferDebited",
            "TransferCredited",
            "TransferRefunded",
        }:
            data.setdefault("currency", "")
        data["schema_version"] = 2
    return data


#: What ``_when_absent`` gives a field every event of its class must carry.
_REQUIRED: Any = object()


@cache
def _when_absent(cls: type) -> tuple[tuple[str, Any], ...]:
    """Each field of ``cls`` in order, with the value it takes when an event's JSON lacks
    it: ``seq`` None (written only by the events that carry one), a field with a default
    that default, any other ``_REQUIRED``."""
    return tuple(
        (f.name, None if f.name == "seq" else _REQUIRED if f.default is MISSING else f.default)
        for f in fields(cls)
    )


def event_from_dict(data: dict[str, Any]) -> Event:
    """Read an event from its JSON form (any schema version); raises on unknown types
    (KeyError), and on a field missing (KeyError) or of a shape no event has.

    Every reader of ``events`` decodes every event with this, three in a worker, so it
    builds the event positionally from a plan made once per class: a third cheaper than
    filtering the JSON's keys into keyword arguments.
    """
    data = upcast(data)
    cls = EVENT_TYPES[data["type"]]
    values = []
    for name, absent in _when_absent(cls):
        value = data.get(name, absent)
        if value is _REQUIRED:
            raise KeyError(f"{data['type']} without {name}")
        values.append(value)
    return cls(*values)
