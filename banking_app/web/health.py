"""Readiness: load balancers and the tests wait for 200 here."""

from __future__ import annotations

from faust.web import Request, Response

from banking_app.runtime.faust_app import app
from banking_app.web.base import ApiView


@app.page("/health")
class Health(ApiView):
    """200 once the worker has joined its group and its tables are recovered, else 503."""

    route = "/health"
    open_to_all = True

    async def get(self, request: Request) -> Response:
        ready = app.rebalancing is False and app.tables.recovery.completed.is_set()
        body = {"status": "ready" if ready else "starting"}
        return self.json(body, status=200 if ready else 503)
