"""The base of every API view: auth, problem+json errors, request metrics."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from banking_app.runtime import metrics
from banking_app.runtime.settings import settings
from banking_app.web.problems import Problem

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"get", "head", "options"})


def authorised(request: Request) -> bool:
    """True when no token is configured for this method, or the bearer token matches."""
    if not settings.api_token:
        return True
    if request.method.lower() in READ_METHODS and not settings.api_token_reads:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    # surrogatepass: aiohttp decodes header bytes that are not UTF-8 to lone surrogates
    # (os.environ does the same), which a plain encode() refuses: that was a 500.
    expected = settings.api_token.encode("utf-8", "surrogatepass")
    given = token.strip().encode("utf-8", "surrogatepass")
    # compare_digest: the time taken does not tell how much of the token was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given, expected)


class ApiView(View):
    #: The route template, e.g. ``/accounts/{account_id}``, used as the metrics label.
    route = ""
    #: Operations endpoints (health, the API description) never ask for a token.
    open_to_all = False

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        try:
            if not self.open_to_all and not authorised(request):
                raise Problem(
                    401,
                    "a valid 'Authorization: Bearer <token>' header is required",
                    slug="unauthorized",
                )
            response = await super().dispatch(request)
        except Problem as problem:
            response = problem.response(self)
        except Exception:  # a bug: say so, log it, and keep serving
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = Problem(500, "unexpected error; it has been logged").response(self)
        metrics.observe_request(
            request.method, self.route, response.status, time.perf_counter() - started
        )
        return response

    async def on_request_error(self, request: Request, exc: WebError) -> Response:
        """Faust's own web errors (e.g. no partition owner yet) as problem documents."""
        return Problem(exc.code, str(exc.detail or "")).response(self)
