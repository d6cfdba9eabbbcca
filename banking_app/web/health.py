"""Readiness: load balancers and the tests wait for 200 here."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response

from banking_app.runtime import restore
from banking_app.runtime.faust_app import app
from banking_app.web.base import ApiView


@app.page("/health")
class Health(ApiView):
    """200 once the worker has joined its group and its tables are recovered, else 503
    with what the recovery has left: an operator watching a worker start on an empty
    disk sees it move, rather than a bare "starting" for a minute."""

    route = "/health"
    open_to_all = True

    async def get(self, request: Request) -> Response:
        ready = app.rebalancing is False and app.tables.recovery.completed.is_set()
        if ready:
            return self.json({"status": "ready"})
        return self.json({"status": "starting", "recovery": recovery_left()}, status=503)


def recovery_left() -> dict[str, Any]:
    """Partitions and records still to read: by the bulk restore before the worker joins
    its group (``runtime.restore``), then by Faust's recovery of its active partitions."""
    bulk = restore.progress
    remaining = [left for left in app.tables.recovery.active_remaining().values() if left > 0]
    return {
        "bulk_restore": {
            "running": bulk.running,
            "partitions_left": bulk.partitions_left,
            "records_left": bulk.records_left,
        },
        "changelogs": {"partitions_left": len(remaining), "records_left": sum(remaining)},
    }
