"""The HTTP API tests' helpers: a small aiohttp client, problem+json checks, ids.

The session worker is shared by every test of the session, so every test makes its own
account ids and Idempotency-Keys (uuid4). Commands are sent with ``?wait=true`` and a
long ``timeout`` (the machine is shared and may be slow); nothing here asserts on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from banking_app.runtime.topics import partition_for
from support.cluster import Broker, Worker

PARTITIONS = 8
#: Seconds: the client's total timeout per request, and ``?timeout=`` of waiting POSTs.
HTTP_TIMEOUT = 60
WAIT = {"wait": "true", "timeout": str(HTTP_TIMEOUT)}
PROBLEM_JSON = "application/problem+json"
PROBLEM_FIELDS = ("type", "title", "status", "detail")

T = TypeVar("T")

_ABSENT: Any = object()


def key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


def new_id(prefix: str = "acct") -> str:
    """A fresh account id (at most 64 characters, as the API requires)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def part(account_id: str) -> int:
    return partition_for(account_id.encode(), PARTITIONS)


def id_on_partition(partition: int, prefix: str = "acct") -> str:
    """A fresh account id whose key lands on ``partition``."""
    while True:
        candidate = new_id(prefix)
        if part(candidate) == partition:
            return candidate


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    @property
    def content_type(self) -> str:
        return str(self.headers.get("Content-Type", "")).split(";")[0].strip()

    @property
    def body(self) -> Any:
        return orjson.loads(self.text)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Reply({self.status}, {self.content_type!r}, {self.text[:2000]!r})"


class Api:
    """One worker's HTTP API, spoken through a shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None = None):
        self.session = session
        self.url = url.rstrip("/")
        self.token = token

    def _headers(self, idempotency_key: str | None, extra: dict[str, str] | None) -> dict:
        headers: dict[str, str] = {}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        headers.update(extra or {})
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _ABSENT,
        data: Any = None,
        idempotency_key: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        kwargs: dict[str, Any] = {"params": params or {}, "data": data}
        if json is not _ABSENT:
            kwargs["data"] = orjson.dumps(json)
            kwargs["headers"] = {"Content-Type": "application/json"}
        kwargs["headers"] = {**kwargs.get("headers", {}), **self._headers(idempotency_key, headers)}
        async with self.session.request(method, self.url + path, **kwargs) as response:
            return Reply(response.status, response.headers, await response.text())

    async def post(
        self,
        path: str,
        json: Any = _ABSENT,
        *,
        idempotency_key: str | None = None,
        wait: bool = True,
        params: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        query = {**(WAIT if wait else {}), **(params or {})}
        return await self.request(
            "POST", path, json=json, idempotency_key=idempotency_key, params=query, **kwargs
        )

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    # ---------------------------------------------------------------- conveniences

    async def account(self, account_id: str) -> dict[str, Any]:
        reply = await self.get(f"/accounts/{account_id}")
        assert reply.status == 200, reply
        return reply.body  # type: ignore[no-any-return]

    async def history(self, account_id: str, **params: Any) -> dict[str, Any]:
        query = {name: str(value) for name, value in params.items()}
        reply = await self.get(f"/accounts/{account_id}/transactions", params=query)
        assert reply.status == 200, reply
        return reply.body  # type: ignore[no-any-return]

    async def open(
        self,
        account_id: str | None = None,
        *,
        currency: str = "EUR",
        owner: str = "Test Owner",
        overdraft_limit: int | None = None,
        deposit: int = 0,
    ) -> str:
        """Open an account (and optionally fund it), waiting for each outcome."""
        account_id = account_id or new_id()
        body: dict[str, Any] = {"account_id": account_id, "owner": owner, "currency": currency}
        if overdraft_limit is not None:
            body["overdraft_limit"] = overdraft_limit
        reply = await self.post("/accounts", body, idempotency_key=key())
        assert reply.status == 200, reply
        if deposit:
            await self.deposit(account_id, deposit)
        return account_id

    async def deposit(self, account_id: str, amount: int, command_id: str | None = None) -> Reply:
        reply = await self.post(
            f"/accounts/{account_id}/deposits",
            {"amount": amount},
            idempotency_key=command_id or key(),
        )
        assert reply.status == 200, reply
        return reply


async def raw_request(
    url: str, method: str, path: str, headers: bytes, body: bytes = b"", host: bytes | None = None
) -> Reply:
    """Send a request exactly as these bytes, in one write, and read the whole reply.

    For what aiohttp's client will not send as given: header bytes that are not UTF-8
    (it drops what it cannot encode), a ``Host`` of one's own, or a body the worker
    refuses as soon as it reads it (the client can fail still writing it).
    ``headers`` are complete lines (``b"Name: value\\r\\n"``).
    """
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        host = host if host is not None else f"{target.host}:{target.port}".encode()
        head = f"{method} {path} HTTP/1.1\r\n".encode() + b"Host: " + host + b"\r\n"
        length = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head + headers + length.encode() + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), HTTP_TIMEOUT)
    finally:
        writer.close()
    status_and_headers, _, text = raw.partition(b"\r\n\r\n")
    status_line, *lines = status_and_headers.decode("latin-1").split("\r\n")
    fields = CIMultiDict(line.split(": ", 1) for line in lines if ": " in line)
    return Reply(int(status_line.split()[1]), fields, text.decode())


def assert_problem(reply: Reply, status: int, reason: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document with this status (and, for a 422, this reason)."""
    assert reply.status == status, reply
    assert reply.content_type == PROBLEM_JSON, reply
    body = reply.body
    assert isinstance(body, dict), reply
    for name in PROBLEM_FIELDS:
        assert name in body, (name, reply)
    assert body["status"] == status, reply
    assert isinstance(body["type"], str) and body["type"], reply
    assert isinstance(body["title"], str) and body["title"], reply
    assert isinstance(body["detail"], str) and body["detail"], reply
    if reason is not None:
        assert body["reason"] == reason, reply
        assert body["type"] == "/problems/" + reason.lower().replace("_", "-"), reply
    return body  # type: ignore[no-any-return]


def view_state(view: dict[str, Any]) -> tuple[int, int, str, int]:
    """(balance, version, status, in_flight) of an account view."""
    return view["balance"], view["version"], view["status"], view["in_flight"]


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = HTTP_TIMEOUT,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``done`` holds. Only for things the API does not promise at
    once (a 202's outcome, a transfer settling), never for read-your-writes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout} s; last value: {value!r}")
        await asyncio.sleep(0.1)


def http_json(method: str, url: str, body: Any = None, headers: dict | None = None) -> tuple:
    """(status, decoded body or None) with the standard library, for sync fixtures."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT + 30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError:
        return None, None
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw


def consumer_partitions(worker: Worker, topic: str) -> set[int]:
    """The partitions of ``topic`` this worker consumes, read from its /metrics lag gauge."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=HTTP_TIMEOUT) as response:
        text = response.read().decode()
    found = set()
    for labels in re.findall(r"^banking_consumer_lag\{([^}]*)\}", text, re.MULTILINE):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("topic") == topic:
            found.add(int(pairs["partition"]))
    return found


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s")
        time.sleep(0.25)


@contextlib.contextmanager
def running_workers(broker: Broker, root: Path, *envs: dict[str, str]) -> Iterator[list[Worker]]:
    """Start one worker per ``env`` on ``broker`` (each in its own directory), all ready."""
    workers = []
    try:
        for n, env in enumerate(envs):
            directory = root / f"worker-{n}"
            directory.mkdir(parents=True, exist_ok=True)
            workers.append(Worker(broker, directory, env=dict(env)))
            workers[-1].start(wait=False)
        for running in workers:
            running.wait_ready()
        yield workers
    finally:
        for running in workers:
            running.stop()
