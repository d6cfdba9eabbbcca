"""Read a read-model key wherever it lives: locally, or from the worker that owns it.

Used by ``?wait=true``, which must see the outcome and the accounts it touched before it
answers, on whichever workers hold them. The read tables are the query service's; they
are found by name in ``app.tables``, so the command service needs no import of it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings
from banking_app.runtime.tables import BatchedTable, get_json
from banking_app.runtime.topics import ACCOUNT_VIEWS_TABLE, COMMAND_OUTCOMES_TABLE
from banking_app.web.problems import Problem

POLL_SECONDS = 0.01


def _ident(url: Any) -> tuple[str, int]:
    return (str(url.host), int(url.port or 80))


async def lookup(table: BatchedTable, key: str, path: str) -> dict[str, Any] | None:
    """The stored value of ``key`` (as the API shows it), or None when there is none yet."""
    try:
        owner = app.router.key_store(table.name, key)
    except KeyError:
        raise Problem(503, "the read model is not assigned to any worker yet") from None
    if _ident(owner) == _ident(app.conf.canonical_url):
        return get_json(table, key)  # type: ignore[no-any-return]
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    async with app.http_client.get(owner.with_path(path), headers=headers) as response:
        if response.status == 404:
            return None
        if response.status != 200:
            raise Problem(503, f"worker {owner} answered {response.status}")
        return await response.json(content_type=None)  # type: ignore[no-any-return]


async def outcome(command_id: str) -> dict[str, Any] | None:
    # Unquoted: yarl quotes the path when it builds the URL (ids are URL-safe anyway).
    return await lookup(app.tables[COMMAND_OUTCOMES_TABLE], command_id, f"/commands/{command_id}")


async def account(account_id: str) -> dict[str, Any] | None:
    """The account's view as stored or as its owner answers it; ``version`` is its seq."""
    return await lookup(app.tables[ACCOUNT_VIEWS_TABLE], account_id, f"/accounts/{account_id}")


async def wait_for_outcome(command_id: str, timeout: float) -> dict[str, Any] | None:
    """The command's terminal outcome once every account it touched shows it, or None.

    The outcome and the account views are projected by different agents, possibly on
    different workers; waiting for both is what makes a following GET read its write.
    """
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = await outcome(command_id)
        if found is not None and found["status"] != "pending":
            break
        await asyncio.sleep(POLL_SECONDS)
    else:
        return None
    kinds = {event["type"] for event in found["events"]}
    while "TransferCredited" in kinds and "TransferSettled" not in kinds:
        # The settlement clears the money in flight on the source: wait for it too, so
        # the source's view is settled when the answer comes.
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)
        found = await outcome(command_id) or found
        kinds = {event["type"] for event in found["events"]}
    for event in found["events"]:
        seq = event.get("seq")
        while seq is not None:
            view = await account(event["account_id"])
            if view is not None and view["version"] >= seq:
                break
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_SECONDS)
    return found
