"""Commands: what a client asks the bank to do, and the saga legs the bank sends itself.

``parse_command`` is the single gate from untrusted JSON to typed commands; everything
past it may assume well-formed fields. Unknown fields are ignored (so Faust's record
metadata and newer clients are accepted); missing or mistyped known fields are not.

The claim legs (``CLAIM_COMMAND_ID`` and its ``COMMAND_ID_ANSWER``) are internal too:
they make a command id bank-wide (``banking_app.domain.command_ids``) and move no money.

A saga leg is read as strictly as ``decide`` writes one, because anything that can
write the commands topic can send one: an amount from 1 to ``MAX_AMOUNT``, a
counterparty other than the account itself, a refund reason a credit can really be
refused for, no ``expected_version``. A bad leg raises ``MalformedLeg``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

from banking_app.domain.errors import REFUND_REASONS, MalformedCommand, MalformedLeg
from banking_app.domain.limits import LIMIT_NAMES

MAX_AMOUNT = 10**15
MAX_ID_LENGTH = 128
# Safe in a URL path segment unescaped, so /commands/{command_id} always routes.
COMMAND_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:@+=-]{0,127}$")
ACCOUNT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # safe in URL paths
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
#: A command's fingerprint (``command_ids.fingerprint``): 128 bits as lowercase hex.
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_OFFSET = 2**63 - 1
MAX_OWNER_LENGTH = 200
#: The most a claim leg carries of a malformed command's text, and of why it is.
MAX_REFUSED_JSON = 16_384
MAX_REFUSAL_LENGTH = 500
MAX_TYPE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Command:
    """Fields every command carries. ``type`` is the wire name of the subclass."""

    type: ClassVar[str]
    public: ClassVar[bool] = True
    leg: ClassVar[str] = ""
    #: For a saga leg, the field naming the transfer's other account ("" otherwise).
    counterparty_field: ClassVar[str] = ""
    #: A leg of the claim that makes a command id bank-wide, not of a transfer.
    claim_leg: ClassVar[bool] = False

    command_id: str
    account_id: str
    expected_version: int | None = None

    @property
    def dedupe_id(self) -> str:
        """The id under which this input is applied at most once.

        A saga leg shares the transfer's command id, so it needs a suffix of its own.
        """
        return f"{self.command_id}/{self.leg}" if self.leg else self.command_id

    @property
    def route_key(self) -> str:
        """The key that picks the partition this input is decided on: its account."""
        return self.account_id

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON wire form that ``parse_command`` reads back."""
        data: dict[str, Any] = {"type": self.type}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                data[field.name] = value
        return data


@dataclass(frozen=True, slots=True)
class CreateAccount(Command):
    type: ClassVar[str] = "CREATE_ACCOUNT"
    owner: str = ""
    currency: str = ""
    overdraft_limit: int = 0
    #: Daily limits in minor units (``banking_app.domain.limits``); ``None``: none.
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Deposit(Command):
    type: ClassVar[str] = "DEPOSIT"
    amount: int = 0


@dataclass(frozen=True, slots=True)
class Withdraw(Command):
    type: ClassVar[str] = "WITHDRAW"
    amount: int = 0


@dataclass(frozen=True, slots=True)
class TransferMoney(Command):
    type: ClassVar[str] = "TRANSFER_MONEY"
    to_account_id: str = ""
    amount: int = 0


@dataclass(frozen=True, slots=True)
class CloseAccount(Command):
    type: ClassVar[str] = "CLOSE_ACCOUNT"


@dataclass(frozen=True, slots=True)
class SetLimits(Command):
    """Replace the account's daily limits: a limit left out (or ``null``) is none."""

    type: ClassVar[str] = "SET_LIMITS"
    daily_withdrawal_limit: int | None = None
    daily_transfer_limit: int | None = None


@dataclass(frozen=True, slots=True)
class CreditTransfer(Command):
    """Saga leg: credit the destination of a transfer already debited from the source."""

    type: ClassVar[str] = "TRANSFER_CREDIT"
    public: ClassVar[bool] = False
    leg: ClassVar[str] = "credit"
    counterparty_field: ClassVar[str] = "from_account_id"
    from_account_id: str = ""
    amount: int = 0
    currency: str = ""


@dataclass(frozen=True, slots=True)
class RefundTransfer(Command):
    """Saga leg: give the source its money back because the credit leg failed."""

    type: ClassVar[str] = "TRANSFER_REFUND"
    public: ClassVar[bool] = False
    leg: ClassVar[str] = "refund"
    counterparty_field: ClassVar[str] = "to_account_id"
    to_account_id: str = ""
    amount: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SettleTransfer(Command):
    """Saga leg: tell the source its transfer was credited, so the money is no longer in flight."""

    type: ClassVar[str] = "TRANSFER_SETTLE"
    public: ClassVar[bool] = False
    leg: ClassVar[str] = "settle"
    counterparty_field: ClassVar[str] = "to_account_id"
    to_account_id: str = ""
    amount: int = 0


class Answer(StrEnum):
    """What a command id's partition answers a claim (``command_ids.answer``)."""

    #: the first use of the id, or a redelivery of it: decide the command
    CLAIMED = "CLAIMED"
    #: the same command again at another position: the first outcome stands
    DUPLICATE = "DUPLICATE"
    #: the id was first used for other content: refuse with COMMAND_ID_REUSED
    REUSED = "REUSED"


@dataclass(frozen=True, slots=True)
class ClaimCommandId(Command):
    """Claim leg: record a command id for the command at ``offset``/``index`` of its
    account's partition. Sent to the partition of the command id (``route_key``), where
    the ``command-claims`` table lives; ``account_id`` is the claimant's account."""

    type: ClassVar[str] = "CLAIM_COMMAND_ID"
    public: ClassVar[bool] = False
    leg: ClassVar[str] = "claim"
    claim_leg: ClassVar[bool] = True
    fingerprint: str = ""
    offset: int = 0
    index: int = 0
    #: Set for a command that failed its checks: why. It is refused where its id is
    #: claimed (MALFORMED_COMMAND when the id is its own), and needs no answer.
    refusal: str | None = None
    #: the malformed command's ``type`` as sent, and the command itself as JSON text
    #: (left out above ``MAX_REFUSED_JSON`` characters; the dead letter has it whole)
    command_type: str | None = None
    command_json: str | None = None

    @property
    def route_key(self) -> str:
        return self.command_id


@dataclass(frozen=True, slots=True)
class CommandIdAnswer(Command):
    """Claim leg: the answer to a ``ClaimCommandId``, sent back to the claimant's account."""

    type: ClassVar[str] = "COMMAND_ID_ANSWER"
    public: ClassVar[bool] = False
    leg: ClassVar[str] = "answer"
    claim_leg: ClassVar[bool] = True
    fingerprint: str = ""
    offset: int = 0
    index: int = 0
    answer: str = ""


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.type: cls
    for cls in (
        CreateAccount,
        Deposit,
        Withdraw,
        TransferMoney,
        CloseAccount,
        SetLimits,
        CreditTransfer,
        RefundTransfer,
        SettleTransfer,
        ClaimCommandId,
        CommandIdAnswer,
    )
}
PUBLIC_COMMAND_TYPES = tuple(name for name, cls in COMMAND_TYPES.items() if cls.public)
#: A saga leg: what ``decide`` sends on the commands topic, never a client.
Leg = CreditTransfer | RefundTransfer | SettleTransfer
#: A claim leg: what the command agent sends to make a command id bank-wide.
ClaimLeg = ClaimCommandId | CommandIdAnswer
CLAIM_LEG_TYPES = tuple(name for name, cls in COMMAND_TYPES.items() if cls.claim_leg)


def _field(data: dict[str, Any], name: str, command_id: str | None) -> Any:
    if name not in data:
        raise MalformedCommand(f"missing field {name!r}", command_id)
    return data[name]


def _string(
    data: dict[str, Any], name: str, pattern: re.Pattern[str], command_id: str | None
) -> str:
    value = _field(data, name, command_id)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedCommand(f"field {name!r} must match {pattern.pattern}", command_id)
    return value


def _integer(data: dict[str, Any], name: str, low: int, high: int, command_id: str | None) -> int:
    value = _field(data, name, command_id)
    # bool is an int subclass and a float like 10.0 is not a count of cents: refuse both.
    if type(value) is not int:
        raise MalformedCommand(f"field {name!r} must be an integer (minor units)", command_id)
    if not low <= value <= high:
        raise MalformedCommand(f"field {name!r} must be from {low} to {high}", command_id)
    return value


def _refusal_fields(data: dict[str, Any], command_id: str | None) -> dict[str, str]:
    """A malformed command's claim: why it failed, its type, and its text, each optional
    and bounded; the text, when there, a JSON object."""
    found = {}
    for name, limit in (
        ("refusal", MAX_REFUSAL_LENGTH),
        ("command_type", MAX_TYPE_LENGTH),
        ("command_json", MAX_REFUSED_JSON),
    ):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise MalformedCommand(
                f"field {name!r} must be a string of at most {limit} characters", command_id
            )
        found[name] = value
    if "command_json" in found:
        try:
            text = json.loads(found["command_json"])
        except ValueError:
            text = None
        if not isinstance(text, dict):
            raise MalformedCommand("field 'command_json' must hold a JSON object", command_id)
    if ("command_type" in found or "command_json" in found) and "refusal" not in found:
        raise MalformedCommand("a claim with a command's text must say why it fails", command_id)
    return found


def _owner(data: dict[str, Any], command_id: str | None) -> str:
    value = _field(data, "owner", command_id)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_OWNER_LENGTH:
        raise MalformedCommand(
            f"field 'owner' must be a non-blank string of at most {MAX_OWNER_LENGTH} characters",
            command_id,
        )
    return value


def _reason(data: dict[str, Any], command_id: str | None) -> str:
    value = _field(data, "reason", command_id)
    if not isinstance(value, str) or value not in REFUND_REASONS:
        raise MalformedCommand(
            f"field 'reason' must be one of {', '.join(sorted(REFUND_REASONS))} "
            "(what a credit can be refused for)",
            command_id,
        )
    return value


def read_command_id(data: Any) -> str | None:
    """The command id of an input, if one can be read even though the rest is bad."""
    if isinstance(data, dict):
        value = data.get("command_id")
        if isinstance(value, str) and COMMAND_ID_RE.fullmatch(value):
            return value
    return None


def parse_command(data: Any, *, allow_internal: bool = True) -> Command:
    """Turn decoded JSON into a typed command, or raise ``MalformedCommand`` saying why.

    A saga leg that is not one ``decide`` could have written raises ``MalformedLeg`` (a
    ``MalformedCommand``), its detail starting ``saga leg <TYPE>: ``. With
    ``allow_internal=False`` (a client's input) a leg type is refused as an unknown type.
    """
    command_id = read_command_id(data)
    if not isinstance(data, dict):
        raise MalformedCommand("a command must be a JSON object", None)
    kind = data.get("type")
    cls = COMMAND_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or (not cls.public and not allow_internal):
        raise MalformedCommand(
            f"field 'type' must be one of {', '.join(PUBLIC_COMMAND_TYPES)}", command_id
        )
    if cls.public:
        return _read(cls, data, command_id)
    try:
        return _read(cls, data, command_id)
    except MalformedCommand as error:
        raise MalformedLeg(f"saga leg {cls.type}: {error.detail}", command_id) from None


def _read(cls: type[Command], data: dict[str, Any], command_id: str | None) -> Command:
    leg = not cls.public
    common: dict[str, Any] = {
        "command_id": _string(data, "command_id", COMMAND_ID_RE, command_id),
        "account_id": _string(data, "account_id", ACCOUNT_ID_RE, command_id),
    }
    if data.get("expected_version") is not None:
        if leg:
            raise MalformedCommand(
                "field 'expected_version' is never set on a saga leg", command_id
            )
        common["expected_version"] = _integer(data, "expected_version", 0, 2**63 - 1, command_id)
    extra: dict[str, Any] = {}
    if cls.claim_leg:
        extra["fingerprint"] = _string(data, "fingerprint", FINGERPRINT_RE, command_id)
        extra["offset"] = _integer(data, "offset", 0, MAX_OFFSET, command_id)
        extra["index"] = _integer(data, "index", 0, MAX_OFFSET, command_id)
        if cls is ClaimCommandId:
            extra.update(_refusal_fields(data, command_id))
        if cls is CommandIdAnswer:
            value = _field(data, "answer", command_id)
            if not isinstance(value, str) or value not in Answer.__members__:
                raise MalformedCommand(
                    f"field 'answer' must be one of {', '.join(Answer)}", command_id
                )
            extra["answer"] = value
        return cls(**common, **extra)
    if cls is CreateAccount:
        extra["owner"] = _owner(data, command_id)
        extra["currency"] = _string(data, "currency", CURRENCY_RE, command_id)
        if data.get("overdraft_limit") is not None:
            extra["overdraft_limit"] = _integer(data, "overdraft_limit", 0, MAX_AMOUNT, command_id)
    if cls is CreateAccount or cls is SetLimits:
        for name in LIMIT_NAMES:
            if data.get(name) is not None:
                extra[name] = _integer(data, name, 0, MAX_AMOUNT, command_id)
    if leg:
        # A leg carries the amount of a debit that was accepted: 1 to MAX_AMOUNT, always.
        extra["amount"] = _integer(data, "amount", 1, MAX_AMOUNT, command_id)
    elif cls in (Deposit, Withdraw, TransferMoney):
        # Only the type is checked here: a well-typed amount out of range is the
        # domain's INVALID_AMOUNT, not a malformed command.
        extra["amount"] = _integer(data, "amount", -(2**63), 2**63 - 1, command_id)
    if cls in (TransferMoney, RefundTransfer, SettleTransfer):
        extra["to_account_id"] = _string(data, "to_account_id", ACCOUNT_ID_RE, command_id)
    if cls is CreditTransfer:
        extra["from_account_id"] = _string(data, "from_account_id", ACCOUNT_ID_RE, command_id)
        extra["currency"] = _string(data, "currency", CURRENCY_RE, command_id)
    if cls is RefundTransfer:
        extra["reason"] = _reason(data, command_id)
    if leg and extra[cls.counterparty_field] == common["account_id"]:
        # A transfer joins two different accounts (SAME_ACCOUNT refuses the others).
        raise MalformedCommand(
            f"field {cls.counterparty_field!r} must name another account than 'account_id'",
            command_id,
        )
    return cls(**common, **extra)
