"""The wire format: plain JSON with UTF-8 keys, readable by any Kafka client.

Keys are always the account id (or command id) as UTF-8 bytes, in producers, tables
and ``table_route`` alike, so every part hashes a key to the same partition.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

#: A dead-letter record holds the bad value (base64 when it is not UTF-8) up to this many
#: bytes, so it stays well under the producer's 1 MB request limit whatever came in.
DEAD_LETTER_VALUE_BYTES = 64 * 1024


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises ``ValueError`` (orjson.JSONDecodeError) on bad input."""
    return orjson.loads(data)


def key(text: str) -> bytes:
    return text.encode()


#: The record timestamps (seconds) an event can carry: years 1 to 9999, what ISO 8601
#: dates hold. Any Kafka producer can set any 64-bit timestamp on a record.
MIN_TIMESTAMP = -62_135_596_800.0
MAX_TIMESTAMP = 253_402_300_799.999


def valid_timestamp(seconds: Any) -> bool:
    """True for a number of seconds ``iso_timestamp`` can format."""
    return (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and MIN_TIMESTAMP <= seconds <= MAX_TIMESTAMP
    )


def iso_timestamp(seconds: float) -> str:
    """UTC ISO 8601 with milliseconds, from a Kafka record timestamp (seconds).

    The same text as ``datetime.fromtimestamp(seconds, UTC).isoformat(timespec=
    "milliseconds")`` with a ``Z``, but the date and time of day are formatted once per
    second: every input and event is stamped, and the inputs of a second share it.
    """
    fraction, whole = math.modf(seconds)  # as datetime rounds: the fraction alone
    micros = round(fraction * 1_000_000)
    second = int(whole)
    if micros < 0:
        second, micros = second - 1, micros + 1_000_000
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{_utc_second(second)}.{micros // 1000:03d}Z"


@lru_cache(maxsize=256)
def _utc_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).replace(tzinfo=None).isoformat()
