"""HTTP views of the worker (Faust web). Readiness first; the query API builds on it."""

from __future__ import annotations

from faust.web import Request, Response, View

from banking_app.app import app


@app.page("/health")
class Health(View):
    """200 once the worker has joined its group and its tables are recovered, else 503."""

    async def get(self, request: Request) -> Response:
        ready = app.rebalancing is False and app.tables.recovery.completed.is_set()
        body = {"status": "ready" if ready else "starting"}
        return self.json(body, status=200 if ready else 503)
