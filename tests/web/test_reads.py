"""Reads on a worker without the read model (roles command and processor), in one
process: real HTTP servers stand in for the query workers, no broker.

Such a worker sends the GETs of the read routes to a query worker and passes its answer
back as given; it tries each query worker it knows; one that is not there is a 503, and
a POST's look-up of its key does not stop the command from being sent.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from banking_app.app import app
from banking_app.runtime import roles
from banking_app.web import lookups, reads
from banking_app.web.problems import PROBLEM_JSON, Problem


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/ann",
        "/accounts/ann/transactions",
        "/accounts/ann/alerts",
        "/commands/k-1",
        "/alerts",
    ],
)
def test_the_read_routes_are_sent_on(path: str) -> None:
    assert reads.is_read("GET", path)
    assert not reads.is_read("POST", path)


@pytest.mark.parametrize(
    "path", ["/accounts", "/accounts/ann/deposits", "/health", "/metrics", "/openapi.json", "/"]
)
def test_other_routes_are_answered_here(path: str) -> None:
    assert not reads.is_read("GET", path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serving(application: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(application)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture()
async def query_worker() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A query worker: an account, a missing command, and the requests it was sent."""
    seen: list[web.Request] = []

    async def account(request: web.Request) -> web.Response:
        seen.append(request)
        body = {"account_id": request.match_info["id"], "version": 3, "q": request.query_string}
        return web.json_response(body, headers={"X-Bank-Replica": "standby"})

    async def command(request: web.Request) -> web.Response:
        seen.append(request)
        problem = {"type": "/problems/not-found", "title": "Not Found", "status": 404}
        return web.json_response(problem, status=404, content_type=PROBLEM_JSON)

    application = web.Application()
    application.router.add_get("/accounts/{id}", account)
    application.router.add_get("/commands/{id}", command)
    runner, url = await serving(application)
    try:
        yield url, seen
    finally:
        await runner.cleanup()


@pytest.fixture()
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture()
async def http_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The app's HTTP client for this test's event loop."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        monkeypatch.setattr(app, "_http_client", session)
        yield


def query_urls(monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    monkeypatch.setattr(roles, "query_urls", lambda: list(urls))


@pytest.fixture()
async def front(http_client: None) -> AsyncIterator[str]:
    """A worker without the read model: the middleware, and a POST view of its own."""

    async def post(request: web.Request) -> web.Response:
        return web.json_response({"answered": "here"}, status=202)

    application = web.Application(middlewares=[reads.reads_to_query_service])
    application.router.add_post("/accounts", post)
    runner, url = await serving(application)
    try:
        yield url
    finally:
        await runner.cleanup()


async def fetch(method: str, url: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def test_a_read_is_answered_by_a_query_worker_as_it_answered(
    monkeypatch: pytest.MonkeyPatch,
    front: str,
    query_worker: tuple[str, list[Any]],
    closed_url: str,
) -> None:
    url, seen = query_worker
    query_urls(monkeypatch, closed_url, url)  # the first is not there: the next answers
    status, kind, body = await fetch("GET", f"{front}/accounts/ann?limit=5")
    assert (status, kind) == (200, "application/json")
    assert body == {"account_id": "ann", "version": 3, "q": "limit=5"}
    status, kind, body = await fetch("GET", f"{front}/commands/k-1")
    assert (status, kind, body["type"]) == (404, PROBLEM_JSON, "/problems/not-found")
    assert [request.path for request in seen] == ["/accounts/ann", "/commands/k-1"]
    # A POST is this worker's own.
    assert await fetch("POST", f"{front}/accounts") == (
        202,
        "application/json",
        {"answered": "here"},
    )
    assert len(seen) == 2


async def test_a_read_with_no_query_worker_there_is_a_503_problem(
    monkeypatch: pytest.MonkeyPatch, front: str, closed_url: str
) -> None:
    query_urls(monkeypatch, closed_url)
    status, kind, body = await fetch("GET", f"{front}/accounts/ann")
    assert (status, kind, body["type"]) == (503, PROBLEM_JSON, "/problems/worker-unreachable")
    assert closed_url in body["detail"]
    query_urls(monkeypatch)
    status, kind, body = await fetch("GET", f"{front}/alerts")
    assert (status, kind, body["type"]) == (503, PROBLEM_JSON, "/problems/read-model-unassigned")


@pytest.mark.usefixtures("http_client")
async def test_a_lookup_of_a_table_held_elsewhere_asks_a_query_worker(
    monkeypatch: pytest.MonkeyPatch, query_worker: tuple[str, list[Any]], closed_url: str
) -> None:
    url, _ = query_worker
    query_urls(monkeypatch, closed_url, url)
    assert await lookups.lookup_by_name("held-elsewhere", "ann", "/accounts/ann") == {
        "account_id": "ann",
        "version": 3,
        "q": "",
    }
    assert await lookups.lookup_by_name("held-elsewhere", "k", "/commands/k") is None


@pytest.mark.usefixtures("http_client")
async def test_a_post_s_key_is_sent_unchecked_only_where_the_read_model_is_elsewhere(
    monkeypatch: pytest.MonkeyPatch, closed_url: str
) -> None:
    query_urls(monkeypatch, closed_url)
    # Here the outcomes table is local (role all): an owner away fails the POST.
    monkeypatch.setattr(app.router, "key_store", lambda table, key: URL(closed_url))
    monkeypatch.setattr(lookups, "routable", _routable)
    with pytest.raises(Problem) as raised:
        await lookups.previous_outcome("k-1")
    assert raised.value.slug == "worker-unreachable"
    # A worker without the table sends the command: the processor claims its id.
    monkeypatch.setattr(lookups, "COMMAND_OUTCOMES_TABLE", "held-elsewhere")
    assert await lookups.previous_outcome("k-1") is None


async def _routable(table: Any) -> None:
    return None
