"""The bank, assembled: the Faust app with the agents and web views of this worker's role.

This is the one place that registers them, so ``faust -A banking_app.app worker`` and
``banking-app worker`` start the same bank. The order is Faust's own: the app, its
topics and tables, the agents, then the views.

The role (``BANKING_ROLE``, or ``banking-app worker --role``; ``runtime.roles``) says
which services are registered. ``all``, the default, registers every one, as the bank
has always run. The others register their own agents and tables only, so a worker
subscribes to its role's topics alone; every role serves every route (the POST views
everywhere, the reads forwarded to a query worker where there is no read model:
``web.reads``). README, "Roles and layouts".
"""

from __future__ import annotations

import asyncio
from types import ModuleType

from banking_app.command_service import views as command_views
from banking_app.runtime import loop_lag, memory, roles
from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings
from banking_app.web import health, metrics_endpoint, openapi, reads
from banking_app.web.problems import problem_errors

services: list[ModuleType] = []
if roles.runs_processor():
    from banking_app.event_processor import agent as event_processor

    services.append(event_processor)
if roles.runs_query():
    from banking_app.query_service import projections
    from banking_app.risk import agent as risk_agent

    services += [projections, risk_agent]
services.append(command_views)
if roles.runs_query():
    from banking_app.query_service import views as query_views
    from banking_app.risk import views as risk_views

    services += [query_views, risk_views]

#: What the assembly registers, by module: each registers its agents or views with
#: ``app`` when imported.
SERVICES = tuple(services)
SHARED_VIEWS = (health, metrics_endpoint, openapi)

# Every view's errors as problem+json, the unexpected ones included.
app.web_middlewares.append(problem_errors)
if not roles.runs_query():
    # No read model here: the reads go to a query worker.
    app.web_middlewares.append(reads.reads_to_query_service)
if not roles.in_group():
    # The command service consumes nothing: a web server and a producer, in no group.
    app.producer_only = True


@app.task
async def watch_event_loop() -> None:
    """``banking_event_loop_lag_seconds`` in ``/metrics`` (``runtime.loop_lag``)."""
    await loop_lag.measure()


if settings.malloc_trim_seconds:

    @app.timer(settings.malloc_trim_seconds)
    async def return_free_heap() -> None:
        """glibc's free heap back to the system (``runtime.memory``), on a thread:
        ctypes lets go of the GIL, so the event loop goes on meanwhile."""
        await asyncio.get_running_loop().run_in_executor(None, memory.trim)


__all__ = ["SERVICES", "SHARED_VIEWS", "app"]
