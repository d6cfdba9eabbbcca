"""The bank, assembled: the Faust app with every agent and web view registered.

This is the one place that registers them, so ``faust -A banking_app.app worker`` and
``banking-app worker`` start the same, complete bank. The order is Faust's own:
the app, its topics and tables, the agents, then the views.
"""

from __future__ import annotations

from banking_app.command_service import views as command_views
from banking_app.event_processor import agent as event_processor
from banking_app.query_service import projections
from banking_app.query_service import views as query_views
from banking_app.risk import agent as risk_agent
from banking_app.risk import views as risk_views
from banking_app.runtime.faust_app import app
from banking_app.web import health, metrics_endpoint, openapi
from banking_app.web.problems import problem_errors

#: What the assembly registers, by module: each registers its agents or views with
#: ``app`` when imported.
SERVICES = (event_processor, projections, risk_agent, command_views, query_views, risk_views)
SHARED_VIEWS = (health, metrics_endpoint, openapi)

# Every view's errors as problem+json, the unexpected ones included.
app.web_middlewares.append(problem_errors)

__all__ = ["SERVICES", "SHARED_VIEWS", "app"]
