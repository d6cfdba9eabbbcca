"""Reads on a worker without the read model: sent on to a query worker.

A client needs one address whatever the layout: every worker serves every route. The
command and processor roles hold no read table (``runtime.roles``), so this middleware
sends their GETs of the read routes to a query worker (``BANKING_QUERY_URL``, or the
group's query workers for a processor), which answers or forwards to the key's owner as
it does for any GET; the answer comes back as it was given, problem documents included.
A query worker that does not answer within ``BANKING_FORWARD_TIMEOUT`` is a 504, one
that cannot be reached a 503, as for any forwarded read (``lookups.forward_failed``).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from yarl import URL

from banking_app.runtime import roles
from banking_app.runtime.faust_app import app
from banking_app.web import lookups
from banking_app.web.problems import PROBLEM_JSON, Problem

#: The GET routes the query service answers: an account, its history and alerts, a
#: command's outcome, the bank's alerts.
READ_ROUTES = re.compile(r"/accounts/[^/]+(/transactions|/alerts)?|/commands/[^/]+|/alerts")
#: Request headers passed on; the rest (Host, Connection, ...) are the hop's own.
PASSED = ("Authorization", "Accept", "Accept-Encoding")


def is_read(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and READ_ROUTES.fullmatch(path) is not None


@web.middleware
async def reads_to_query_service(request: web.Request, handler: Any) -> web.StreamResponse:
    if not is_read(request.method, request.path):
        return await handler(request)  # type: ignore[no-any-return]
    try:
        return await _sent_on(request)
    except Problem as problem:
        return web.json_response(problem.body(), status=problem.status, content_type=PROBLEM_JSON)


async def _sent_on(request: web.Request) -> web.Response:
    urls = roles.query_urls()
    if not urls:
        raise lookups.no_query_service()
    headers = {name: request.headers[name] for name in PASSED if name in request.headers}
    failure: Problem | None = None
    for url in urls:
        target = URL(url).with_path(request.rel_url.path).with_query(request.rel_url.query)
        try:
            async with app.http_client.request(
                request.method, target, headers=headers, allow_redirects=False
            ) as response:
                body = await response.read()
                return web.Response(
                    body=body,
                    status=response.status,
                    headers={
                        name: response.headers[name]
                        for name in ("Content-Type", "X-Bank-Replica", "Location")
                        if name in response.headers
                    },
                )
        except lookups.FORWARD_ERRORS as exc:
            failure = lookups.forward_failed(exc, url)
    assert failure is not None
    raise failure
