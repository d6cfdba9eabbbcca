"""Readiness: load balancers and the tests wait for 200 here."""

from __future__ import annotations

from dataclasses import asdict
from time import monotonic
from typing import Any

from faust.web import Request, Response

from banking_app.runtime import restore
from banking_app.runtime.faust_app import app
from banking_app.runtime.liveness import watch
from banking_app.web.base import ApiView


@app.page("/health")
class Health(ApiView):
    """200 once the worker has joined its group and its tables are recovered, else 503
    with what the recovery has left: an operator watching a worker start on an empty
    disk sees it move, rather than a bare "starting" for a minute. A ready worker with an
    agent that makes no progress is 503 ``stalled`` (``runtime.liveness``)."""

    route = "/health"
    open_to_all = True

    async def get(self, request: Request) -> Response:
        ready = app.rebalancing is False and app.tables.recovery.completed.is_set()
        if not ready:
            return self.json({"status": "starting", "recovery": recovery_left()}, status=503)
        stalls = watch.stalled(lags(), monotonic())
        if stalls:
            return self.json(
                {"status": "stalled", "stalled": [asdict(stall) for stall in stalls]}, status=503
            )
        return self.json({"status": "ready"})


def lags() -> dict[str, int]:
    """Records waiting for each agent's topic, over this worker's partitions of it: the
    end the last fetch saw, less the offset consumed to (``InOrderConsumer.consumed_to``;
    not the records handed to the agent: a take that fails again and again holds
    records already handed over)."""
    consumer: Any = app.consumer
    watched = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    waiting: dict[str, int] = {}
    for tp in consumer.assignment():
        if tp.topic not in watched:
            continue
        end, consumed = consumer.highwater(tp), consumer.consumed_to(tp)
        if end is not None and consumed is not None:
            waiting[tp.topic] = waiting.get(tp.topic, 0) + max(0, end - consumed)
    return waiting


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
