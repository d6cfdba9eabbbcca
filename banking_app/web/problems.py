"""RFC 9457 problem details: every error the API gives is ``application/problem+json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from faust.web import Response, View

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(Exception):
    """Raised anywhere in a view to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, slug: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.slug}" if self.slug else "about:blank",
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self, view: View) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return view.json(
            self.body(), status=self.status, content_type=PROBLEM_JSON, headers=headers
        )


@web.middleware
async def problem_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """The router's own errors (unknown path, method not allowed) as problem documents too."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {
            "type": "about:blank",
            "title": TITLES.get(exc.status, exc.reason),
            "status": exc.status,
            "detail": f"{request.method} {request.path}: {exc.reason}",
        }
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(
            body, status=exc.status, content_type=PROBLEM_JSON, headers=headers
        )


def bad_request(detail: str) -> Problem:
    return Problem(400, detail, slug="validation")


def not_found(detail: str) -> Problem:
    return Problem(404, detail, slug="not-found")
