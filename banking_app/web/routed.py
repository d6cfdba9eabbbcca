"""Reads of one key, answered wherever the request lands (``routed``).

The query service's views and the risk service's ``GET /accounts/{id}/alerts`` each
read one key of one table. Faust's ``table_route`` sends such a request to the worker
that owns the key's partition; ``routed`` adds what a bank's reader needs around it:
problems rather than 500s when the owner is away, and an answer from this worker's
standby replica of the partition while the group has not yet noticed the owner's death.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP
from faust.web import Request, Response

from banking_app.runtime import codec
from banking_app.runtime.faust_app import app
from banking_app.runtime.tables import BatchedTable
from banking_app.web import lookups
from banking_app.web.base import ApiView
from banking_app.web.problems import bad_request

Handler = Callable[..., Awaitable[Response]]


def routed(table: BatchedTable, match_info: str) -> Callable[[Handler], Handler]:
    """Faust's ``table_route``, answering problems when the key's owner is away.

    Faust forwards a request for a key another worker owns (``Router._route_req``, in
    faust-streaming 0.15.3's ``faust/app/router.py``) through ``app.http_client``, giving
    it no timeout of its own; that client's requests end after BANKING_FORWARD_TIMEOUT
    (``banking_app.runtime.faust_app.forwarding_client``; aiohttp's default is five
    minutes). What the forwarding then raises, or raises when the owner cannot be
    reached, left the view as a 500; here it is a 504 or a 503 problem document
    (``lookups.forward_failed``). A key this worker owns is read by the view itself,
    which does no network I/O, so none of these can come from it; and the local path
    costs no more than a ``try``. A ``Host`` header that makes no URL, which Faust's
    forwarding cannot rewrite (a ValueError), is a 400.

    When the owner cannot be reached but this worker keeps a standby replica of the
    key's partition (Faust's ``table_standby_replicas``, 1 by default), the view answers
    from the replica, marked ``X-Bank-Replica: standby``: after a worker dies, queries go
    on being answered from the survivors during the seconds until the group notices and
    a survivor takes the partition over (``taking-over`` while a request that went to
    the former owner comes back to the new one). A replica follows the changelog closely but
    may lack the latest writes, as any read of a read model may; ``?wait=true`` does not
    use replicas, so read-your-writes still holds. While the group rebalances, an answer
    this worker gives for a key it owns is marked ``recovering``: a partition it has just
    been given may still be catching up on its changelog (Faust's recovery runs until the
    worker is ready, and ``app.rebalancing`` stays set until then).
    """

    def decorate(handler: Handler) -> Handler:
        route = app.table_route(table=table, match_info=match_info)(handler)

        @functools.wraps(handler)
        async def get(view: ApiView, request: Request, **kwargs: Any) -> Response:
            await lookups.routable(table)
            if app.rebalancing and lookups.owned_here(table, request.match_info[match_info]):
                # A partition given to this worker in this rebalance is still being
                # recovered from its changelog until the worker is ready again.
                response = await handler(view, request, **kwargs)
                response.headers[REPLICA_HEADER] = "recovering"
                return response
            try:
                return await route(view, request, **kwargs)
            except lookups.FORWARD_ERRORS as exc:
                key = request.match_info[match_info]
                replica = _replica_here(table, key)
                if replica is not None:
                    # Faust applies a standby's changelog records 1,000 at a time
                    # (``standby_buffer_size``): apply what has arrived, then read.
                    app.tables.recovery.flush_buffers()
                    response = await handler(view, request, **kwargs)
                    response.headers[REPLICA_HEADER] = replica
                    return response
                raise lookups.forward_failed(exc, _owner(table, key)) from None
            except ValueError:
                if request.url.absolute:
                    raise
                raise bad_request("the Host header does not name a host") from None

        return get

    return decorate


#: Marks an answer read from this worker's standby replica (``routed``).
REPLICA_HEADER = "X-Bank-Replica"


def _replica_here(table: BatchedTable, key: str) -> str | None:
    """``standby`` when this worker keeps a standby replica of ``key``'s partition of
    ``table``; ``taking-over`` when it has just been given the partition, while the
    request went to its former owner; None when it holds no copy."""
    tp = TP(table.changelog_topic.get_topic_name(), table.partition_of(codec.key(key)))
    if tp in app.assignor.assigned_standbys():
        return "standby"
    if tp in app.assignor.assigned_actives():
        return "taking-over"
    return None


def _owner(table: BatchedTable, key: str) -> str:
    try:
        return str(app.router.key_store(table.name, key))
    except KeyError:
        return "no worker yet"
