"""From an HTTP request to a typed command: the same gate (``parse_command``) Kafka input
goes through, plus the checks HTTP can make before anything is sent."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web
from faust.web import Request

from banking_app.domain import MalformedCommand, parse_command
from banking_app.domain.commands import ACCOUNT_ID_RE, COMMAND_ID_RE, MAX_AMOUNT, Command
from banking_app.web.problems import bad_request

MAX_BODY_BYTES = 64 * 1024
MAX_WAIT_SECONDS = 60.0
#: Account ids generated for ``POST /accounts`` without one are derived from the
#: Idempotency-Key when there is one, so a retried request names the same account.
ACCOUNT_ID_NAMESPACE = uuid.UUID("0b6d1f0e-52a2-4d6a-9d0c-3f2f3c6e7a11")


async def json_body(request: Request, allowed: set[str], required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object with only ``allowed`` fields, or a 400."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise bad_request(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        raw = await request.read()  # the whole body, however it was chunked
    except web.HTTPRequestEntityTooLarge:  # beyond aiohttp's own limit (1 MiB)
        raise bad_request(f"the body is larger than {MAX_BODY_BYTES} bytes") from None
    except web.RequestPayloadError as exc:  # e.g. a gzip Content-Encoding that is not gzip
        raise bad_request(f"the body could not be read: {_what(exc)}") from None
    if len(raw) > MAX_BODY_BYTES:
        raise bad_request(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise bad_request("a JSON object body is required")
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")
    return data


def _what(exc: Exception) -> str:
    """What went wrong, from aiohttp's ``400, message:\n  <what>``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header when it is a valid command id, None when absent,
    else a 400: any other value (non-ASCII, or bytes aiohttp could only decode to
    surrogates) must be refused before anything uses it."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not COMMAND_ID_RE.fullmatch(key):
        raise bad_request(f"Idempotency-Key must match {COMMAND_ID_RE.pattern}")
    return key


def command_id(request: Request) -> str:
    key = idempotency_key(request)
    return key if key is not None else str(uuid.uuid4())


def new_account_id(request: Request) -> str:
    key = idempotency_key(request)
    return str(uuid.uuid5(ACCOUNT_ID_NAMESPACE, key) if key is not None else uuid.uuid4())


def account_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ACCOUNT_ID_RE.fullmatch(value):
        raise bad_request(f"{field} must match {ACCOUNT_ID_RE.pattern}")
    return value


def command(kind: str, command_id: str, fields: dict[str, Any]) -> Command:
    try:
        parsed = parse_command(
            {"type": kind, "command_id": command_id, **fields}, allow_internal=False
        )
    except MalformedCommand as exc:
        raise bad_request(exc.detail) from None
    amount = getattr(parsed, "amount", None)
    if amount is not None and not 1 <= amount <= MAX_AMOUNT:
        raise bad_request(f"amount must be an integer from 1 to {MAX_AMOUNT} (minor units)")
    return parsed


def wait_options(request: Request) -> tuple[bool, float]:
    """``?wait=true&timeout=S``: whether to wait for the outcome, and for how long."""
    wait = request.query.get("wait", "false").lower()
    if wait not in {"true", "false", "1", "0"}:
        raise bad_request("wait must be true or false")
    raw = request.query.get("timeout", "10")
    try:
        timeout = float(raw)
    except ValueError:
        raise bad_request("timeout must be a number of seconds") from None
    if not 0 < timeout <= MAX_WAIT_SECONDS:
        raise bad_request(f"timeout must be more than 0 and at most {MAX_WAIT_SECONDS:g}")
    return wait in {"true", "1"}, timeout


def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be from {low} to {high}")
    return value
