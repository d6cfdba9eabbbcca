"""Worker roles: the setting, the layouts ``dev`` runs, and the group's assignment.

The assignment tests run Faust's own assignor logic (faust-streaming 0.15.3) on a group
of members of different roles, as the group's leader would, and hand each member its
part as Kafka would: no broker, but no mock of the code under test either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from faust.assignor import PartitionAssignor
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
from yarl import URL

from banking_app.app import app
from banking_app.operations import local_dev
from banking_app.operations.launcher import take_role_option
from banking_app.runtime import settings as settings_module
from banking_app.runtime.assignor import (
    BANK_TABLES,
    PROCESSOR_TABLES,
    QUERY_TABLES,
    RoleAssignor,
    changelog_topic,
)
from banking_app.runtime.settings import ROLES, parse_query_urls, parse_role

# --- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_accepted_in_any_case_and_with_blanks(role: str) -> None:
    assert parse_role(role) == role
    assert parse_role(f"  {role.upper()} ") == role


def test_no_role_is_all() -> None:
    assert parse_role("") == "all"
    assert parse_role("   ") == "all"


@pytest.mark.parametrize("raw", ["querry", "commands", "all,query", "processor query", "0"])
def test_an_unknown_role_stops_the_worker_naming_the_roles(raw: str) -> None:
    with pytest.raises(SystemExit) as stop:
        parse_role(raw)
    message = str(stop.value)
    assert "BANKING_ROLE" in message and repr(raw) in message
    for role in ROLES:
        assert role in message


def test_the_settings_refuse_an_unknown_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANKING_ROLE", "router")
    with pytest.raises(SystemExit, match="BANKING_ROLE"):
        settings_module.load()
    monkeypatch.setenv("BANKING_ROLE", "Query")
    assert settings_module.load().role == "query"
    monkeypatch.delenv("BANKING_ROLE")
    assert settings_module.load().role == "all"


def test_query_urls_are_base_urls() -> None:
    assert parse_query_urls("") == ()
    assert parse_query_urls("http://q1:6066/, http://q2:6067") == (
        "http://q1:6066",
        "http://q2:6067",
    )
    for bad in ("q1:6066", "http://q1:6066/accounts", "ftp://q1"):
        with pytest.raises(SystemExit, match="BANKING_QUERY_URL"):
            parse_query_urls(bad)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["worker", "--role", "query", "-l", "info"], (["worker", "-l", "info"], "query")),
        (
            ["--datadir", "d", "worker", "--role=processor"],
            (["--datadir", "d", "worker"], "processor"),
        ),
        (["worker", "-l", "info"], (["worker", "-l", "info"], None)),
        # Another command's --role is not the worker's.
        (["dev", "--roles", "processor,query"], (["dev", "--roles", "processor,query"], None)),
    ],
)
def test_the_launcher_takes_the_worker_s_role_option(
    argv: list[str], expected: tuple[list[str], str | None]
) -> None:
    assert take_role_option(argv) == expected


# --- dev layouts ------------------------------------------------------------------------


def test_dev_layouts() -> None:
    assert local_dev.layout(None, None) == ("all",)
    assert local_dev.layout(None, 2) == ("all", "all")
    assert local_dev.layout("processor, Query,command", None) == ("processor", "query", "command")
    for roles, workers in (
        ("query", None),  # nothing decides commands
        ("processor,command", None),  # nothing answers reads
        ("processor,reader", None),
        ("all", 2),
        (None, 0),
    ):
        with pytest.raises(local_dev.LayoutError):
            local_dev.layout(roles, workers)


def test_dev_gives_each_worker_a_port_and_directory_and_tells_commands_where_queries_are(
    tmp_path: Any,
) -> None:
    plans = local_dev.plans(("processor", "query", "command"), 6066, tmp_path)
    assert [(p.role, p.web_port, p.directory.name) for p in plans] == [
        ("processor", 6066, "worker"),
        ("query", 6067, "worker-1"),
        ("command", 6068, "worker-2"),
    ]
    assert local_dev.role_env(plans[2], plans) == {
        "BANKING_ROLE": "command",
        "BANKING_QUERY_URL": "http://localhost:6067",
    }
    assert local_dev.role_env(plans[0], plans) == {"BANKING_ROLE": "processor"}


# --- the group's assignment -------------------------------------------------------------

PARTITIONS = 8
APP_ID = app.conf.id
#: The topics each role subscribes to: its agents' and its tables' changelogs.
PROCESSOR_TOPICS = {"commands", *(changelog_topic(APP_ID, t) for t in PROCESSOR_TABLES)}
QUERY_TOPICS = {
    "events",
    "command-outcome-events",
    *(changelog_topic(APP_ID, t) for t in QUERY_TABLES),
}
TOPICS_OF = {
    "processor": PROCESSOR_TOPICS,
    "query": QUERY_TOPICS,
    "all": PROCESSOR_TOPICS | QUERY_TOPICS,
}
TABLES_OF = {"processor": PROCESSOR_TABLES, "query": QUERY_TABLES, "all": BANK_TABLES}


def test_the_all_worker_holds_every_table_of_every_role() -> None:
    """So in a group of ``all`` workers the assignor decides exactly as Faust's own."""
    assert app.tables.changelog_topics == {changelog_topic(APP_ID, t) for t in BANK_TABLES}


@dataclass
class FakeTables:
    """A table manager as the assignor reads it: changelog topic names, no global table."""

    changelog_topics: set[str]
    data: dict[str, Any] = field(default_factory=dict)


def member_app(role: str, url: str) -> Any:
    """An app as the assignor sees it, for a worker of ``role`` at ``url``."""
    tables = FakeTables({changelog_topic(APP_ID, t) for t in TABLES_OF[role]})
    conf = SimpleNamespace(id=APP_ID, canonical_url=URL(url), table_standby_replicas=1)
    return SimpleNamespace(tables=tables, conf=conf, tracer=None)


class Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))


def assign(assignor_class: type, members: dict[str, str], leader: str) -> dict[str, Any]:
    """The leader's assignment of a group of ``{url: role}``, by member url."""
    leader_assignor = assignor_class(member_app(members[leader], leader), replicas=1)
    metadata = {
        url: ConsumerProtocolMemberMetadata(
            4,
            sorted(TOPICS_OF[role]),
            ClientMetadata(
                assignment=ClientAssignment(actives={}, standbys={}),
                url=url,
                changelog_distribution={},
                external_topic_distribution={},
                topic_groups={},
            ).dumps(),
        )
        for url, role in members.items()
    }
    return leader_assignor._perform_assignment(Cluster(), metadata)  # type: ignore[no-any-return]


def received(assignor_class: type, url: str, role: str, assignment: Any) -> Any:
    """The member's assignor once it has taken its assignment (Faust checks it there)."""
    member = assignor_class(member_app(role, url), replicas=1)
    member.on_assignment(assignment)
    return member


SPLIT = {"http://p1:1": "processor", "http://q1:2": "query", "http://q2:3": "query"}


@pytest.mark.parametrize("leader", sorted(SPLIT))
def test_a_split_group_gives_each_role_its_own_topics_whoever_leads(leader: str) -> None:
    assignments = assign(RoleAssignor, SPLIT, leader)
    actives: dict[str, set[str]] = {}
    for url, role in SPLIT.items():
        member = received(RoleAssignor, url, role, assignments[url])
        actives[url] = {tp.topic for tp in member.assigned_actives()}
        assert actives[url] <= TOPICS_OF[role], url
        # Every member knows which worker holds which partition of every table.
        for table in BANK_TABLES:
            holders = member.table_metadata(changelog_topic(APP_ID, table))
            held = [p for topics in holders.values() for ps in topics.values() for p in ps]
            assert sorted(held) == list(range(PARTITIONS)), (url, table, holders)
    assert actives["http://p1:1"] == PROCESSOR_TOPICS
    # The two query workers share the query topics' partitions, one owner each.
    q1, q2 = (
        received(RoleAssignor, u, "query", assignments[u]) for u in ("http://q1:2", "http://q2:3")
    )
    events = {tp.partition for tp in q1.assigned_actives() if tp.topic == "events"}
    others = {tp.partition for tp in q2.assigned_actives() if tp.topic == "events"}
    assert events and others and not events & others
    assert events | others == set(range(PARTITIONS))


def test_faust_s_own_assignor_fails_a_split_group_led_by_the_processor() -> None:
    """Why ``RoleAssignor``: Faust's leader takes for changelogs only its own tables'. The
    read tables are missing from what the group routes by, and a query worker given a
    standby of one fails Faust's check of its assignment."""
    assignments = assign(PartitionAssignor, SPLIT, "http://p1:1")
    with pytest.raises(AssertionError):
        received(PartitionAssignor, "http://q1:2", "query", assignments["http://q1:2"])
    member = received(PartitionAssignor, "http://p1:1", "processor", assignments["http://p1:1"])
    views = member.table_metadata(changelog_topic(APP_ID, "account-views"))
    assert not any(views.values())


def test_a_group_of_all_workers_is_assigned_as_faust_assigns_it() -> None:
    group = {"http://a1:1": "all", "http://a2:2": "all", "http://a3:3": "all"}
    ours = assign(RoleAssignor, group, "http://a2:2")
    faust_s = assign(PartitionAssignor, group, "http://a2:2")
    assert {url: a.encode() for url, a in ours.items()} == {
        url: a.encode() for url, a in faust_s.items()
    }


def test_the_all_role_registers_what_the_bank_always_registered() -> None:
    """The default layout is the bank as it was: every agent, table and view."""
    assert sorted(app.agents) == [
        "banking_app.event_processor.agent.process_commands",
        "banking_app.query_service.projections.project_accounts",
        "banking_app.query_service.projections.project_outcomes",
        "banking_app.risk.agent.detect_alerts",
    ]
    assert sorted(app.tables) == sorted(BANK_TABLES)
    assert sorted(app.web.views) == [
        "/accounts",
        "/accounts/{account_id}",
        "/accounts/{account_id}/alerts",
        "/accounts/{account_id}/close",
        "/accounts/{account_id}/deposits",
        "/accounts/{account_id}/limits",
        "/accounts/{account_id}/transactions",
        "/accounts/{account_id}/withdrawals",
        "/alerts",
        "/commands/{command_id}",
        "/health",
        "/metrics",
        "/openapi.json",
        "/transfers",
    ]
    assert [m.__name__ for m in app.web_middlewares] == ["problem_errors"]
    assert not app.producer_only
    assert isinstance(app.assignor, RoleAssignor)


PROBE = """
import json
from banking_app.app import app
print(json.dumps({
    "agents": sorted(name.rsplit(".", 1)[1] for name in app.agents),
    "tables": sorted(app.tables),
    "reads": "/accounts/{account_id}" in app.web.views,
    "posts": "/transfers" in app.web.views,
    "middlewares": [m.__name__ for m in app.web_middlewares],
    "producer_only": app.producer_only,
}))
"""


@pytest.mark.parametrize(
    ("role", "agents", "tables", "reads_here", "producer_only"),
    [
        ("processor", ["process_commands"], PROCESSOR_TABLES, False, False),
        (
            "query",
            ["detect_alerts", "project_accounts", "project_outcomes"],
            QUERY_TABLES,
            True,
            False,
        ),
        ("command", [], (), False, True),
    ],
)
def test_each_role_registers_its_own_services_only(
    role: str, agents: list[str], tables: tuple[str, ...], reads_here: bool, producer_only: bool
) -> None:
    """Imported in a process of its own: the role decides what the import registers."""
    env = {**os.environ, "BANKING_ROLE": role}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["agents"] == agents
    assert found["tables"] == sorted(tables)
    assert found["reads"] is reads_here
    assert found["posts"] is True  # every role takes commands
    forwards = [] if reads_here else ["reads_to_query_service"]
    assert found["middlewares"] == ["problem_errors", *forwards]
    assert found["producer_only"] is producer_only


# --- what a worker tells of the other roles from its group -------------------------------


def group_holds(monkeypatch: pytest.MonkeyPatch, distribution: dict[str, dict]) -> None:
    monkeypatch.setattr(app.assignor, "changelog_distribution", distribution)


ACCOUNTS = changelog_topic(APP_ID, "accounts")
VIEWS = changelog_topic(APP_ID, "account-views")


def test_commands_partitions_without_a_processor_are_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from banking_app.runtime import roles
    from banking_app.web import health

    group_holds(monkeypatch, {"http://q:1": {VIEWS: list(range(PARTITIONS))}})
    assert roles.unprocessed_partitions() == list(range(PARTITIONS))
    delayed = health.processing_delayed()
    assert delayed is not None
    assert (delayed["processing"], delayed["undecided_partitions"]) == ("delayed", list(range(8)))
    group_holds(
        monkeypatch,
        {"http://p1:1": {ACCOUNTS: [0, 1, 2, 3]}, "http://q:1": {VIEWS: list(range(8))}},
    )
    assert health.processing_delayed()["undecided_partitions"] == [4, 5, 6, 7]  # type: ignore[index]
    group_holds(
        monkeypatch,
        {"http://p1:1": {ACCOUNTS: [0, 1, 2, 3]}, "http://p2:2": {ACCOUNTS: [4, 5, 6, 7]}},
    )
    assert health.processing_delayed() is None


def test_reads_go_to_the_configured_query_workers_else_to_the_group_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from banking_app.runtime import roles

    me = str(app.conf.canonical_url).rstrip("/")
    group_holds(
        monkeypatch,
        {
            me: {VIEWS: [0, 1]},
            "http://q2:2": {VIEWS: [2, 3, 4, 5, 6, 7]},
            "http://p:3": {ACCOUNTS: list(range(8))},
        },
    )
    assert roles.query_urls() == ["http://q2:2"]
    configured = dataclasses.replace(roles.settings, query_urls=("http://front-q:9",))
    monkeypatch.setattr(roles, "settings", configured)
    assert roles.query_urls() == ["http://front-q:9"]
