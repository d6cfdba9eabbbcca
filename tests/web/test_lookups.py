"""Forwarded lookups and ``?wait=true`` in one process, without a broker.

A read forwarded to another worker is limited to BANKING_FORWARD_TIMEOUT: an owner that
accepts the connection and never answers is a 504, one that refuses it a 503. A wait
never takes longer than its timeout, lookups under way included, and a wait whose
owner is away runs out like any other (None: the view answers 202 pending).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from banking_app.query_service.projections import command_outcomes_table
from banking_app.runtime import produce
from banking_app.runtime.faust_app import app
from banking_app.web import lookups
from banking_app.web.problems import Problem
from support.silent_server import silent_server

FORWARD_TIMEOUT = 0.5
#: Seconds a timed call may take beyond its limit on a slow, shared machine.
MARGIN = 5.0


@pytest.fixture()
def short_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    short = dataclasses.replace(lookups.settings, forward_timeout=FORWARD_TIMEOUT)
    monkeypatch.setattr(lookups, "settings", short)


@pytest.fixture()
async def silent_owner() -> AsyncIterator[URL]:
    """A worker address that accepts connections and never answers."""
    async with silent_server("127.0.0.1") as server:
        port = server.sockets[0].getsockname()[1]
        yield URL(f"http://127.0.0.1:{port}")


@pytest.fixture()
def closed_port() -> URL:
    """A worker address nobody listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return URL(f"http://127.0.0.1:{port}")


@pytest.fixture()
async def http_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The app's HTTP client for this test's event loop."""
    async with aiohttp.ClientSession() as session:
        monkeypatch.setattr(app, "_http_client", session)
        yield


def owned_by(monkeypatch: pytest.MonkeyPatch, owner: URL) -> None:
    monkeypatch.setattr(app.router, "key_store", lambda table, key: owner)


async def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result: Any = await call()
    except Problem as problem:
        result = problem
    return result, time.monotonic() - started


async def forwarded(
    monkeypatch: pytest.MonkeyPatch, owner: URL, lookup: Callable[[], Any]
) -> tuple[Problem, float]:
    """The problem ``lookup`` ends in when ``owner`` owns every key, naming ``owner``; and
    how long it took."""
    owned_by(monkeypatch, owner)
    problem, took = await timed(lookup)
    assert isinstance(problem, Problem), problem
    assert str(owner) in problem.detail
    return problem, took


@pytest.mark.usefixtures("short_forwards", "http_client")
async def test_a_lookup_forwarded_to_an_owner_that_never_answers_is_504(
    monkeypatch: pytest.MonkeyPatch, silent_owner: URL
) -> None:
    problem, took = await forwarded(monkeypatch, silent_owner, lambda: lookups.outcome("cmd-1"))
    assert (problem.status, problem.slug) == (504, "worker-timeout")
    assert f"within {FORWARD_TIMEOUT:g} s" in problem.detail
    assert FORWARD_TIMEOUT * 0.9 <= took < FORWARD_TIMEOUT + MARGIN


@pytest.mark.usefixtures("short_forwards", "http_client")
async def test_a_lookup_forwarded_to_an_owner_that_cannot_be_reached_is_503(
    monkeypatch: pytest.MonkeyPatch, closed_port: URL
) -> None:
    problem, took = await forwarded(monkeypatch, closed_port, lambda: lookups.account("acct-1"))
    assert (problem.status, problem.slug) == (503, "worker-unreachable")
    assert "could not be reached" in problem.detail
    assert took < FORWARD_TIMEOUT + MARGIN


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (aiohttp.ServerTimeoutError("read"), 504),  # a ClientError that is a timeout too
        (aiohttp.ServerDisconnectedError(), 503),
        (ConnectionResetError("reset"), 503),
    ],
)
def test_forwarding_failures_are_problems(error: Exception, status: int) -> None:
    assert isinstance(error, lookups.FORWARD_ERRORS)
    problem = lookups.forward_failed(error, "http://elsewhere:6066")
    assert problem.status == status
    assert "http://elsewhere:6066" in problem.detail


async def test_a_read_model_without_an_owner_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    def unassigned(table: str, key: str) -> URL:
        raise KeyError(key)

    monkeypatch.setattr(app.router, "key_store", unassigned)
    with pytest.raises(Problem) as raised:
        await lookups.lookup(command_outcomes_table, "k", "/commands/k")
    assert (raised.value.status, raised.value.slug) == (503, "read-model-unassigned")


# ---------------------------------------------------------------------------- waits

WAIT = 1.0


def outcomes(monkeypatch: pytest.MonkeyPatch, read: Callable[[str], Any]) -> None:
    monkeypatch.setattr(lookups, "outcome", read)


async def forever(_: str) -> Any:
    await asyncio.sleep(3600)


async def test_a_wait_whose_lookup_hangs_runs_out_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes(monkeypatch, forever)
    found, took = await timed(lambda: lookups.wait_for_outcome("cmd", WAIT))
    assert found is None
    assert WAIT * 0.9 <= took < WAIT + MARGIN


async def test_a_wait_whose_owner_is_away_tries_again_then_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries: list[str] = []

    async def away(command_id: str) -> Any:
        tries.append(command_id)
        raise Problem(504, "no answer", slug="worker-timeout")

    outcomes(monkeypatch, away)
    found, took = await timed(lambda: lookups.wait_for_outcome("cmd", WAIT))
    assert found is None
    assert len(tries) >= 2
    assert took < WAIT + MARGIN


async def test_a_wait_ends_at_once_on_any_other_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused(_: str) -> Any:
        raise Problem(503, "worker answered 401")

    outcomes(monkeypatch, refused)
    with pytest.raises(Problem, match="answered 401"):
        await lookups.wait_for_outcome("cmd", WAIT)


DEPOSITED = {
    "command_id": "cmd",
    "status": "accepted",
    "events": [{"type": "MoneyDeposited", "account_id": "acct", "seq": 3}],
}


async def test_a_wait_whose_account_lookup_hangs_runs_out_on_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def terminal(_: str) -> Any:
        return DEPOSITED

    outcomes(monkeypatch, terminal)
    monkeypatch.setattr(lookups, "account", forever)
    found, took = await timed(lambda: lookups.wait_for_outcome("cmd", WAIT))
    assert found is None
    assert took < WAIT + MARGIN


async def test_a_wait_answers_once_the_account_shows_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = iter([None, {"version": 2}, {"version": 3}])

    async def terminal(_: str) -> Any:
        return DEPOSITED

    async def account(_: str) -> Any:
        return next(versions)

    outcomes(monkeypatch, terminal)
    monkeypatch.setattr(lookups, "account", account)
    assert await lookups.wait_for_outcome("cmd", 30) == DEPOSITED


class RecordingProducer:
    """Stands in for the worker's aiokafka producer: records the topics asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked.append(topic)
        return {0}


@pytest.fixture()
def producer(monkeypatch: pytest.MonkeyPatch) -> RecordingProducer:
    recording = RecordingProducer()
    monkeypatch.setattr(app.producer, "_ensure_producer", lambda: recording)
    monkeypatch.setattr(produce, "_KNOWN", set())
    return recording


def tables_ready(monkeypatch: pytest.MonkeyPatch, ready: bool) -> None:
    monkeypatch.setattr(app.tables.recovery.completed, "is_set", lambda: ready)


async def test_a_lookup_while_the_worker_starts_is_a_503_and_asks_about_no_topic(
    monkeypatch: pytest.MonkeyPatch, producer: RecordingProducer
) -> None:
    tables_ready(monkeypatch, False)
    with pytest.raises(Problem) as raised:
        await lookups.lookup(command_outcomes_table, "k", "/commands/k")
    assert (raised.value.status, raised.value.slug) == (503, "worker-starting")
    assert "worker-starting" in lookups.RETRIED  # a ?wait keeps waiting
    # Asking a broker that creates topics on request would make it with one partition.
    assert producer.asked == []


async def test_once_the_tables_are_ready_the_changelog_is_loaded_into_metadata_once(
    monkeypatch: pytest.MonkeyPatch, producer: RecordingProducer
) -> None:
    tables_ready(monkeypatch, True)
    await lookups.routable(command_outcomes_table)
    await lookups.routable(command_outcomes_table)
    assert producer.asked == [command_outcomes_table.changelog_topic.get_topic_name()]


def test_a_key_is_owned_here_only_when_the_router_places_it_on_this_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``owned_here`` decides whether a view answers from its own tables while the group
    rebalances (marked ``recovering``): a key placed elsewhere, or nowhere yet, is not."""
    owned_by(monkeypatch, URL(str(app.conf.canonical_url)))
    assert lookups.owned_here(command_outcomes_table, "c-1")
    owned_by(monkeypatch, URL("http://elsewhere.invalid:6066"))
    assert not lookups.owned_here(command_outcomes_table, "c-1")

    def unplaced(table: str, key: str) -> URL:
        raise KeyError(key)

    monkeypatch.setattr(app.router, "key_store", unplaced)
    assert not lookups.owned_here(command_outcomes_table, "c-1")
