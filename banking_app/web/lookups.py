"""Read a read-model key wherever it lives: locally, or from the worker that owns it.

Used by ``?wait=true``, which must see the outcome and the accounts it touched before it
answers, on whichever workers hold them. The read tables are the query service's; they
are found by name in ``app.tables``, so the command service needs no import of it. A
worker whose role holds no read model (``runtime.roles``: command, processor) asks a
query worker instead, which answers or forwards to the owner as for any GET.

Every read forwarded to another worker is limited to ``BANKING_FORWARD_TIMEOUT``: a
worker that does not answer is a 504, one that cannot be reached a 503 (``forward_failed``,
which the query views use for Faust's forwarding too), both problem documents, rather
than a request that hangs or a 500.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from banking_app.runtime import roles
from banking_app.runtime.faust_app import app
from banking_app.runtime.produce import known_to_producer
from banking_app.runtime.settings import settings
from banking_app.runtime.tables import BatchedTable, get_json
from banking_app.runtime.topics import ACCOUNT_VIEWS_TABLE, COMMAND_OUTCOMES_TABLE
from banking_app.web.problems import Problem

log = logging.getLogger(__name__)

POLL_SECONDS = 0.01
#: Seconds between tries while a forwarded lookup of a wait fails (the owner is away).
RETRY_SECONDS = 0.25
#: Failed lookups a wait tries again: the owner did not answer, or could not be
#: reached, or the read model is between owners. Any other problem ends the wait.
RETRIED = frozenset(
    {"worker-timeout", "worker-unreachable", "read-model-unassigned", "worker-starting"}
)

T = TypeVar("T")


def ident(url: Any) -> tuple[str, int]:
    """A worker's host and port, from its URL (a ``yarl.URL`` or a string)."""
    url = URL(str(url))
    return (str(url.host), int(url.port or 80))


#: What a request forwarded to another worker raises when that worker is away.
FORWARD_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def forward_failed(exc: BaseException, owner: str) -> Problem:
    """The answer to a request forwarded to ``owner`` that raised ``exc`` (one of
    FORWARD_ERRORS): 504 when it did not answer in time, 503 when it was not reached."""
    if isinstance(exc, TimeoutError):  # first: aiohttp's own timeouts are ClientErrors too
        return Problem(
            504,
            f"the worker holding this data ({owner}) did not answer within "
            f"{settings.forward_timeout:g} s; retry later",
            slug="worker-timeout",
        )
    return Problem(
        503,
        f"the worker holding this data ({owner}) could not be reached "
        f"({str(exc) or type(exc).__name__}); retry later",
        slug="worker-unreachable",
    )


async def routable(table: BatchedTable) -> None:
    """Make sure Faust's router can place keys of ``table``: its changelog topic is in
    the producer's metadata (``runtime.produce.known_to_producer``). Until the worker's
    tables are first ready that topic may not exist yet: a 503 ``worker-starting``."""
    topic = table.changelog_topic.get_topic_name()
    if not await known_to_producer(topic, app.tables.recovery.completed.is_set):
        raise Problem(
            503, "the worker is starting: its tables are not ready yet", slug="worker-starting"
        )


def owned_here(table: BatchedTable, key: str) -> bool:
    """Whether Faust's router places ``key`` of ``table`` on this worker."""
    try:
        owner = app.router.key_store(table.name, key)
    except KeyError:
        return False
    return ident(owner) == ident(app.conf.canonical_url)


async def lookup(table: BatchedTable, key: str, path: str) -> dict[str, Any] | None:
    """The stored value of ``key`` (as the API shows it), or None when there is none yet."""
    await routable(table)
    try:
        owner = app.router.key_store(table.name, key)
    except KeyError:
        raise Problem(
            503, "the read model is not assigned to any worker yet", slug="read-model-unassigned"
        ) from None
    if ident(owner) == ident(app.conf.canonical_url):
        return get_json(table, key)  # type: ignore[no-any-return]
    try:
        return await forwarded(owner.with_path(path))
    except FORWARD_ERRORS as exc:
        raise forward_failed(exc, str(owner)) from None


async def forwarded(url: Any) -> dict[str, Any] | None:
    """GET ``url`` of another worker, with the API token and the forward timeout: its
    JSON, None for a 404, a 503 problem for any other answer; raises FORWARD_ERRORS when
    the worker is away."""
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    timeout = aiohttp.ClientTimeout(total=settings.forward_timeout)
    async with app.http_client.get(url, headers=headers, timeout=timeout) as response:
        if response.status == 404:
            return None
        if response.status != 200:
            raise Problem(503, f"worker {url.origin()} answered {response.status}")
        try:
            return await response.json(content_type=None)  # type: ignore[no-any-return]
        except ValueError:
            raise Problem(503, f"worker {url.origin()} did not answer JSON") from None


def no_query_service() -> Problem:
    """Within a wait, retried like an owner that is away (``read-model-unassigned``)."""
    return Problem(
        503,
        "no query-service worker is known to this worker (BANKING_QUERY_URL, or a query "
        "worker in its consumer group); retry later",
        slug="read-model-unassigned",
    )


async def from_query_service(path: str) -> dict[str, Any] | None:
    """``path`` as a query worker answers it, for a worker without the read model: each
    query worker in turn until one answers; the last one's failure when none does."""
    urls = roles.query_urls()
    if not urls:
        raise no_query_service()
    failure: Problem | None = None
    for url in urls:
        try:
            return await forwarded(URL(url).with_path(path))
        except FORWARD_ERRORS as exc:
            failure = forward_failed(exc, url)
        except Problem as problem:
            if problem.status != 503:
                raise
            # A query worker starting or between owners: away for now, like one not
            # reached (a wait tries again).
            failure = Problem(503, problem.detail, slug="worker-starting")
    assert failure is not None
    raise failure


async def previous_outcome(command_id: str) -> dict[str, Any] | None:
    """The outcome a POST's key already has, looked up before the command is sent.

    Where the read model is local (``all``, ``query``), a lookup that fails fails the
    POST, as it always has: nothing is sent. A worker without it (``command``,
    ``processor``) is there to take commands while the query service is away, so when
    no query worker answers it sends the command anyway (None): the event processor
    claims every command id bank-wide, so a key sent before is a duplicate, applied
    once, and a key used for another command is refused as ``COMMAND_ID_REUSED``.
    """
    if COMMAND_OUTCOMES_TABLE in app.tables:
        return await outcome(command_id)
    try:
        return await outcome(command_id)
    except Problem as problem:
        if problem.slug not in RETRIED:
            raise
        log.info("no query worker answered for %s; sending it unchecked", command_id)
        return None


async def lookup_by_name(table_name: str, key: str, path: str) -> dict[str, Any] | None:
    table = app.tables.get(table_name)
    if table is None:
        return await from_query_service(path)
    return await lookup(table, key, path)  # type: ignore[arg-type]


async def outcome(command_id: str) -> dict[str, Any] | None:
    # Unquoted: yarl quotes the path when it builds the URL (ids are URL-safe anyway).
    return await lookup_by_name(COMMAND_OUTCOMES_TABLE, command_id, f"/commands/{command_id}")


async def account(account_id: str) -> dict[str, Any] | None:
    """The account's view as stored or as its owner answers it; ``version`` is its seq."""
    return await lookup_by_name(ACCOUNT_VIEWS_TABLE, account_id, f"/accounts/{account_id}")


async def wait_for_outcome(command_id: str, timeout: float) -> dict[str, Any] | None:
    """The command's terminal outcome once every account it touched shows it, or None
    when that takes longer than ``timeout`` seconds (lookups under way included).

    The outcome and the account views are projected by different agents, possibly on
    different workers; waiting for both is what makes a following GET read its write.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _shown_everywhere(command_id)
    except TimeoutError:
        return None


async def _shown_everywhere(command_id: str) -> dict[str, Any]:
    found = await _poll(functools.partial(outcome, command_id), _terminal)
    while _in_flight(found):
        # The settlement clears the money in flight on the source: wait for it too, so
        # the source's view is settled when the answer comes.
        await asyncio.sleep(POLL_SECONDS)
        found = await _retrying(functools.partial(outcome, command_id)) or found
    for event in found["events"]:
        seq = event.get("seq")
        if seq is not None:
            await _poll(functools.partial(account, event["account_id"]), _at_least(seq))
    return found


def _terminal(found: dict[str, Any] | None) -> bool:
    return found is not None and found["status"] != "pending"


def _in_flight(found: dict[str, Any]) -> bool:
    kinds = {event["type"] for event in found["events"]}
    return "TransferCredited" in kinds and "TransferSettled" not in kinds


def _at_least(seq: int) -> Callable[[dict[str, Any] | None], bool]:
    return lambda view: view is not None and view["version"] >= seq


async def _poll(read: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """``read()`` again every POLL_SECONDS until ``done`` says so (the caller's timeout
    ends it otherwise)."""
    while True:
        value = await _retrying(read)
        if done(value):
            return value
        await asyncio.sleep(POLL_SECONDS)


async def _retrying(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, tried again while its owner is away: within a wait, an owner that
    does not answer is a wait that runs out (202 pending), not an error."""
    while True:
        try:
            return await read()
        except Problem as problem:
            if problem.slug not in RETRIED:
                raise
            log.debug("a wait's lookup failed, trying again: %s", problem.detail)
            await asyncio.sleep(RETRY_SECONDS)
