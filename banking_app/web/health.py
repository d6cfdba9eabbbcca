"""Readiness: load balancers and the tests wait for 200 here."""

from __future__ import annotations

from dataclasses import asdict
from time import monotonic
from typing import Any

from faust.web import Request, Response

from banking_app.runtime import restore, roles
from banking_app.runtime.faust_app import app
from banking_app.runtime.liveness import watch
from banking_app.runtime.settings import settings
from banking_app.web.base import ApiView


@app.page("/health")
class Health(ApiView):
    """200 once the worker has joined its group and its tables are recovered, else 503
    with what the recovery has left: an operator watching a worker start on an empty
    disk sees it move, rather than a bare "starting" for a minute. A ready worker with an
    agent that makes no progress is 503 ``stalled`` (``runtime.liveness``). A query
    worker whose group has no event processor for some partitions of ``commands`` is
    200 ``processing-delayed`` (``processing_delayed``); a command worker, in no group,
    is ready once started."""

    route = "/health"
    open_to_all = True

    async def get(self, request: Request) -> Response:
        if not roles.in_group():
            # The command service: a web server and a producer (Faust's producer_only),
            # ready once started; it holds nothing to recover.
            return self.json({"status": "ready", "role": roles.ROLE})
        ready = app.rebalancing is False and app.tables.recovery.completed.is_set()
        if not ready:
            return self.json({"status": "starting", "recovery": recovery_left()}, status=503)
        stalls = watch.stalled(lags(), monotonic())
        if stalls:
            return self.json(
                {"status": "stalled", "stalled": [asdict(stall) for stall in stalls]}, status=503
            )
        if not roles.runs_processor():
            delayed = processing_delayed()
            if delayed is not None:
                return self.json({"status": "processing-delayed", **delayed})
        return self.json({"status": "ready"})


def processing_delayed() -> dict[str, Any] | None:
    """On a worker without the event processor (query): what it can tell of the
    processors from its group's assignment. None when every partition of ``commands``
    has one; else the partitions without, which decide nothing until a processor joins.

    The answer stays 200: the worker answers reads, from a read model that stops
    moving, and its POSTs still put commands on Kafka, where they wait to be decided.
    A processor that dies is noticed when its session times out
    (``BANKING_SESSION_TIMEOUT``) and the group rebalances.
    """
    missing = roles.unprocessed_partitions()
    if not missing:
        return None
    return {
        "role": roles.ROLE,
        "processing": "delayed",
        "undecided_partitions": missing,
        "detail": (
            f"no event processor holds {len(missing)} of the {settings.partitions} partitions "
            "of commands: commands sent to them are not being decided, and reads show the "
            "bank as of the last events processed"
        ),
    }


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
