"""Typed ``faust.Record`` classes for the wire format: the public face of the bank's topics.

The bank's own topics carry raw bytes on purpose (a value that is not a command must be
dead-lettered with a reason, not dropped by Faust's value decoder) and its domain is plain
dataclasses. Neither the worker nor its agents import this module, so it costs them
nothing: it is for Faust users, tests and documentation.

A Record's JSON is the documented wire format (README, "Wire format") byte for byte:
``type`` first, then the fields in the order ``Command.to_dict`` and ``Event.to_dict``
write them, integers for money, no ``__faust`` metadata, and an optional field left out
when it is None. So ``await commands.send(key=account_id, value=Deposit(...))`` from a
user's own Faust app puts on the wire exactly what any other Kafka client would.

Commands carry no ``schema_version``: ``parse_command`` would ignore one, but the
documented command format has none, and without it a Record's bytes equal those of the
domain command it stands for. Every event carries ``schema_version``; an event written
by an older release is upcast (``banking_app.domain.events.upcast``) as it is read.

``typed_topics(app)`` declares ``commands`` and ``events`` on the user's app. The wire
has no Faust metadata to pick a Record class by, so the abstract ``CommandRecord`` and
``EventRecord`` are the topics' value types and their ``from_data`` picks the class by
``type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import faust
from faust.types import AppT, ModelT

from banking_app.domain.events import SCHEMA_VERSION, upcast


class _WireRecord(faust.Record, abstract=True, serializer="json", include_metadata=False):
    """A record whose JSON is plain wire JSON: ``type``, then its fields, None left out."""

    #: The wire name of the record: a class attribute, never a field a caller could set.
    type: ClassVar[str]
    #: The concrete classes by ``type``; set on the abstract bases below.
    _by_type: ClassVar[Mapping[str, type[_WireRecord]]]

    def to_representation(self) -> dict[str, Any]:
        # Faust's own would write None for an unset optional field (and metadata when
        # asked); the wire leaves both out, as ``Command.to_dict`` does.
        fields = {name: value for name, value in self.asdict().items() if value is not None}
        return {"type": self.type, **fields}

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], *, preferred_type: type[ModelT] | None = None
    ) -> _WireRecord:
        """The record a decoded wire object stands for, of the class its ``type`` names.

        On an abstract base (a typed topic's value type) the class is picked by ``type``;
        on a concrete class ``type`` must name it. Fields the class does not know are
        ignored, as ``parse_command`` ignores them; a missing one is a ``ValueError``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a wire record must be a JSON object, not {type(data).__name__}")
        kind = data.get("type")
        target = cls._by_type.get(kind) if isinstance(kind, str) else None
        if target is None or (not cls.__is_abstract__ and target is not cls):
            raise ValueError(f"{cls.__name__} cannot be read from type {kind!r}")
        fields = target._options.fieldset
        try:
            return target(**{name: value for name, value in data.items() if name in fields})
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{kind}: {exc}") from exc


class CommandRecord(_WireRecord, abstract=True):
    """A public command, as a client puts it on ``commands`` keyed by ``account_id``."""

    command_id: str
    account_id: str
    expected_version: int | None = None


class CreateAccount(CommandRecord):
    """``overdraft_limit`` defaults to 0, as in the domain, so the bytes equal its command's."""

    owner: str
    currency: str
    overdraft_limit: int = 0
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None
    type = "CREATE_ACCOUNT"


class Deposit(CommandRecord):
    amount: int
    type = "DEPOSIT"


class Withdraw(CommandRecord):
    amount: int
    type = "WITHDRAW"


class TransferMoney(CommandRecord):
    """Keyed by the source, ``account_id``; the bank's saga credits ``to_account_id``."""

    to_account_id: str
    amount: int
    type = "TRANSFER_MONEY"


class CloseAccount(CommandRecord):
    type = "CLOSE_ACCOUNT"


class SetLimits(CommandRecord):
    """Replaces both daily limits: one left out (None) is no limit."""

    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None
    type = "SET_LIMITS"


class EventRecord(_WireRecord, abstract=True):
    """A fact on ``events``, keyed by ``account_id``."""

    event_id: str
    command_id: str
    account_id: str
    occurred_at: str
    schema_version: int = SCHEMA_VERSION

    def to_representation(self) -> dict[str, Any]:
        # ``schema_version`` is declared last (a default may not precede the fields
        # without one) but is written second, as ``Event.to_dict`` writes it.
        # An optional field is left out when None, as ``Event.to_dict`` leaves it out.
        fields = {name: value for name, value in self.asdict().items() if value is not None}
        return {"type": self.type, "schema_version": fields.pop("schema_version"), **fields}

    @classmethod
    def from_data(
        cls, data: Mapping[str, Any], *, preferred_type: type[ModelT] | None = None
    ) -> _WireRecord:
        if isinstance(data, Mapping):
            data = upcast(dict(data))
        return super().from_data(data, preferred_type=preferred_type)


class _SequencedEvent(EventRecord, abstract=True):
    """An event that changes its account, and so carries the account's next ``seq``."""

    seq: int


class AccountCreated(_SequencedEvent):
    owner: str
    currency: str
    overdraft_limit: int
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None
    type = "AccountCreated"


class MoneyDeposited(_SequencedEvent):
    amount: int
    balance: int
    currency: str
    type = "MoneyDeposited"


class MoneyWithdrawn(_SequencedEvent):
    amount: int
    balance: int
    currency: str
    type = "MoneyWithdrawn"


class TransferDebited(_SequencedEvent):
    transfer_id: str
    to_account_id: str
    amount: int
    balance: int
    currency: str
    type = "TransferDebited"


class TransferCredited(_SequencedEvent):
    transfer_id: str
    from_account_id: str
    amount: int
    balance: int
    currency: str
    type = "TransferCredited"


class TransferRefunded(_SequencedEvent):
    transfer_id: str
    to_account_id: str
    amount: int
    balance: int
    currency: str
    reason: str
    type = "TransferRefunded"


class TransferSettled(EventRecord):
    """The credit leg succeeded; changes no balance, so carries no ``seq``."""

    transfer_id: str
    to_account_id: str
    amount: int
    type = "TransferSettled"


class AccountClosed(_SequencedEvent):
    type = "AccountClosed"


class LimitsSet(_SequencedEvent):
    """The account's daily limits now; None is no limit."""

    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None
    type = "LimitsSet"


class CommandRejected(EventRecord):
    """No ``seq``: a rejection changes nothing. ``command`` is the command as it came."""

    reason: str
    detail: str
    command_type: str
    command: dict[str, Any]
    type = "CommandRejected"


COMMAND_RECORDS: dict[str, type[CommandRecord]] = {
    cls.type: cls
    for cls in (CreateAccount, Deposit, Withdraw, TransferMoney, CloseAccount, SetLimits)
}
EVENT_RECORDS: dict[str, type[EventRecord]] = {
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
CommandRecord._by_type = COMMAND_RECORDS
EventRecord._by_type = EVENT_RECORDS


def command_record(data: Mapping[str, Any]) -> CommandRecord:
    """The Record of a decoded public command; ``ValueError`` for any other ``type``."""
    return CommandRecord.from_data(data)  # type: ignore[return-value]


def event_record(data: Mapping[str, Any]) -> EventRecord:
    """The Record of a decoded event (any schema version); ``ValueError`` for unknown types."""
    return EventRecord.from_data(data)  # type: ignore[return-value]


def typed_topics(app: AppT) -> tuple[faust.TopicT, faust.TopicT]:
    """``(commands, events)`` declared on the caller's app, keyed by account id as text.

    Values are sent as wire JSON and read back as the Record their ``type`` names. The
    bank owns both topics (partitions, retention), so they are declared as plain,
    external topics. ``commands`` also carries the bank's internal saga legs, which are
    not public records: it is for sending; read ``events`` to learn outcomes.
    """
    commands = app.topic("commands", key_type=str, value_type=CommandRecord)
    events = app.topic("events", key_type=str, value_type=EventRecord)
    return commands, events
