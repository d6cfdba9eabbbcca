"""Saga legs carry a seal that only the bank's workers can make.

Anyone who can write ``commands`` could otherwise send a leg: a refund of money never
debited, a credit never paid for. Kafka ACLs can keep clients off the topic, but the
bank invites any Kafka client to send commands there. So each leg a worker sends
carries ``seal``: an HMAC-SHA256 (truncated to 128 bits, base64url) of the leg's fields,
keyed with ``BANKING_LEG_KEY``, which only the workers hold. A leg without a valid seal
is dead-lettered (``FORGED_LEG``) and changes nothing.

The seal covers the typed leg (``Command.to_dict()``, keys sorted), not the bytes that
came, so a leg re-sent by another worker, or re-keyed as a plain record, keeps it. A
copy of a genuine leg is valid, and is a duplicate, applied at most once like any
input. Every worker of a bank needs the same key; changing it strands the legs in
flight, so it is rotated only with ``commands`` drained.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

import orjson

from banking_app.domain.commands import Command
from banking_app.domain.errors import MalformedCommand

#: The field of a leg's JSON that carries its seal.
SEAL_FIELD = "seal"
#: The shortest key accepted: 128 bits as hex.
MIN_KEY_LENGTH = 32


class ForgedLeg(MalformedCommand):
    """A saga leg whose seal is missing or wrong: not sent by a worker of this bank."""


def seal(leg: Command, key: bytes) -> str:
    """The seal of ``leg`` under ``key``."""
    return _seal(leg.to_dict(), key)


def _seal(fields: dict[str, Any], key: bytes) -> str:
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    digest = hmac.digest(key, body, "sha256")[:16]  # the one-shot C path
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sealed(leg: Command, key: bytes) -> dict[str, Any]:
    """The leg's wire form with its seal."""
    fields = leg.to_dict()
    return {**fields, SEAL_FIELD: _seal(fields, key)}


def check(leg: Command, data: dict[str, Any], key: bytes) -> None:
    """Raise ``ForgedLeg`` unless ``data`` (the leg as it came) carries ``leg``'s seal."""
    given = data.get(SEAL_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given, seal(leg, key)):
        raise ForgedLeg("a saga leg without a valid seal: only the bank's workers send legs")
