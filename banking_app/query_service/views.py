"""The query service: account views, histories and command outcomes over HTTP.

Every view is stacked on ``table_route`` (through ``routed``): any worker answers any key
by forwarding the request to the worker that owns the key's partition, within
``BANKING_FORWARD_TIMEOUT`` (a 504 or 503 problem otherwise).
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response

from banking_app.query_service import read_model
from banking_app.query_service.projections import (
    account_views_table,
    command_outcomes_table,
    transactions_table,
)
from banking_app.runtime.faust_app import app
from banking_app.runtime.tables import BatchedTable, get_json
from banking_app.web import validation
from banking_app.web.base import ApiView
from banking_app.web.problems import not_found
from banking_app.web.routed import routed

MAX_PAGE = 500


def _found(table: BatchedTable, key: str, missing: str) -> Any:
    """``key``'s JSON in ``table``; a 404 problem saying ``missing`` when it has none."""
    value = get_json(table, key)
    if value is None:
        raise not_found(missing)
    return value


@app.page("/accounts/{account_id}")
class Account(ApiView):
    route = "/accounts/{account_id}"

    @routed(account_views_table, "account_id")
    async def get(self, request: Request, account_id: str) -> Response:
        view = _found(account_views_table, account_id, f"no account {account_id!r}")
        return self.json(read_model.public_view(view))


@app.page("/accounts/{account_id}/transactions")
class Transactions(ApiView):
    route = "/accounts/{account_id}/transactions"

    @routed(transactions_table, "account_id")
    async def get(self, request: Request, account_id: str) -> Response:
        limit = validation.int_query(request, "limit", 50, 1, MAX_PAGE)
        before_seq = validation.int_query(request, "before_seq", 2**53, 1, 2**53)
        view = _found(account_views_table, account_id, f"no account {account_id!r}")
        newest = min(before_seq - 1, view["version"])
        oldest = max(newest - limit + 1, 1)
        items = []
        # seq is gapless, so a page is ``limit`` point lookups, however long the history.
        for seq in range(newest, oldest - 1, -1):
            item = get_json(transactions_table, read_model.history_key(account_id, seq))
            if item is not None:
                items.append(item)
        return self.json(
            {
                "account_id": account_id,
                "items": items,
                "next_before_seq": oldest if oldest > 1 and items else None,
            }
        )


@app.page("/commands/{command_id}")
class CommandOutcome(ApiView):
    route = "/commands/{command_id}"

    @routed(command_outcomes_table, "command_id")
    async def get(self, request: Request, command_id: str) -> Response:
        outcome = _found(
            command_outcomes_table, command_id, f"no outcome for command {command_id!r} (yet)"
        )
        return self.json(outcome)
