"""The alerts over HTTP: an account's, and the bank's since a time.

``GET /accounts/{id}/alerts`` is one key of ``account-alerts``, read where it lives
(``web.routed``: locally, or forwarded to the worker that owns the account's partition,
or from this worker's standby replica while that worker is away). ``GET /alerts?since=``
has no one key: every worker answers for the partitions it owns (``scope=local``), and
the worker asked gathers the answers of all of them, within ``BANKING_FORWARD_TIMEOUT``
each (a 504 or 503 problem, never a partial list presented as the whole). Each worker
scans its own partitions' entries: alerts are rare, so the table holds few accounts; a
time-ordered index would be the next step if it ever held many.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response
from yarl import URL

from banking_app.domain.commands import ACCOUNT_ID_RE
from banking_app.risk import rules
from banking_app.risk.agent import alerts_table
from banking_app.runtime import codec
from banking_app.runtime.faust_app import app
from banking_app.runtime.tables import get_json
from banking_app.web import lookups, validation
from banking_app.web.base import ApiView
from banking_app.web.problems import Problem, bad_request
from banking_app.web.routed import routed

MAX_ALERTS = 1000


def since_query(request: Request) -> int | None:
    """``?since=`` as milliseconds since the epoch: an ISO 8601 time (UTC when it names
    no zone), or a 400; None when absent."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return rules.millis(moment.isoformat())
    except (ValueError, OverflowError):
        raise bad_request("since must be an ISO 8601 time, such as 2026-11-02T09:00:00Z") from None


def _order(alert: dict[str, Any]) -> tuple[int, str]:
    return rules.millis(alert["raised_at"]), alert["alert_id"]


def local_alerts(since: int | None) -> list[dict[str, Any]]:
    """The alerts raised at or after ``since`` in the partitions this worker owns."""
    topic = alerts_table.changelog_topic.get_topic_name()
    partitions = [tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic]
    found = []
    for _, value in alerts_table.local_items(partitions):
        for alert in codec.loads(value)["alerts"]:
            if since is None or rules.millis(alert["raised_at"]) >= since:
                found.append(alert)
    return found


async def _from_worker(url: Any, query: dict[str, str]) -> list[dict[str, Any]]:
    target = url.with_path("/alerts").with_query({**query, "scope": "local"})
    try:
        body = await lookups.forwarded(target)
    except lookups.FORWARD_ERRORS as exc:
        raise lookups.forward_failed(exc, str(url)) from None
    if body is None:
        raise Problem(503, f"worker {url.origin()} answered 404")
    return body["alerts"]  # type: ignore[no-any-return]


async def bank_alerts(since: int | None, query: dict[str, str]) -> list[dict[str, Any]]:
    """Every worker's ``local_alerts``: this one's, and the others' asked over HTTP."""
    await lookups.routable(alerts_table)
    owners = [
        url
        for url, topics in app.router.table_metadata(alerts_table.name).items()
        if any(topics.values())
    ]
    if not owners:
        raise Problem(
            503, "the alerts are not assigned to any worker yet", slug="read-model-unassigned"
        )
    here = lookups.ident(app.conf.canonical_url)
    others = [URL(url) for url in owners if lookups.ident(url) != here]
    gathered = await asyncio.gather(*(_from_worker(url, query) for url in others))
    found = local_alerts(since) if len(others) < len(owners) else []
    for alerts in gathered:
        found += alerts
    return found


@app.page("/alerts")
class Alerts(ApiView):
    route = "/alerts"

    async def get(self, request: Request) -> Response:
        since = since_query(request)
        limit = validation.int_query(request, "limit", 100, 1, MAX_ALERTS)
        scope = request.query.get("scope", "bank")
        if scope not in {"bank", "local"}:
            raise bad_request("scope must be bank or local")
        if scope == "local":
            found = local_alerts(since)
        else:
            query = {key: request.query[key] for key in ("since",) if key in request.query}
            found = await bank_alerts(since, query)
        unique = {alert["alert_id"]: alert for alert in found}  # a partition between owners
        ordered = sorted(unique.values(), key=_order)
        return self.json(
            {
                "since": rules.iso(since) if since is not None else None,
                "alerts": ordered[:limit],
                "truncated": len(ordered) > limit,
            }
        )


@app.page("/accounts/{account_id}/alerts")
class AccountAlerts(ApiView):
    route = "/accounts/{account_id}/alerts"

    @routed(alerts_table, "account_id")
    async def get(self, request: Request, account_id: str) -> Response:
        if not ACCOUNT_ID_RE.fullmatch(account_id):
            raise bad_request(f"account_id must match {ACCOUNT_ID_RE.pattern}")
        listing = get_json(alerts_table, account_id)
        alerts = listing["alerts"] if listing else []
        return self.json({"account_id": account_id, "alerts": alerts})
