"""The partition assignor of a consumer group whose workers run different roles.

Relies on faust-streaming 0.15.3, ``faust/assignor/partition_assignor.py``
(``PartitionAssignor``: its ``_table_manager`` attribute, read by
``_get_changelog_distribution``, ``_get_external_topic_distribution``,
``_protocol_assignments`` and ``on_assignment``) and ``faust/assignor/
cluster_assignment.py`` (``ClusterAssignment.copartitioned_assignments``).

Faust's assignor already copes with members that subscribe to different topics: the
leader groups the topics by partition count *and by the set of members subscribed to
them*, and gives each group's partitions only to those members. So a processor (``commands`` and its
three changelogs) and a query worker (``events``, ``command-outcome-events`` and five
changelogs) in one group each get their own topics, and an ``all`` worker, subscribed
to everything, takes part in both groups.

What it does not cope with is members that know different tables. The leader decides
which topics are changelogs from *its own* table manager: only those go into the
group's ``changelog_distribution`` (which ``app.router`` and ``table_route`` find a
key's owner by), and only their standby partitions go into the Kafka assignment; each
member then asserts that its assignment is what its own tables make of it. A processor
elected leader would leave the read tables out of the distribution (every routed GET a
503) and crash any query worker given a standby. ``RoleAssignor`` therefore decides
with every table of the bank, of every role (``BANK_TABLES``), whichever role the
leader runs. In a group of ``all`` workers, which hold every table, that is exactly
Faust's own decision.
"""

from __future__ import annotations

from typing import Any

from faust.assignor import PartitionAssignor

from banking_app.runtime.table_names import (
    ACCOUNT_VIEWS_TABLE,
    ACCOUNTS_TABLE,
    ALERTS_TABLE,
    COMMAND_CLAIMS_TABLE,
    COMMAND_OFFSETS_TABLE,
    COMMAND_OUTCOMES_TABLE,
    RISK_STATE_TABLE,
    TRANSACTIONS_TABLE,
)

#: The event processor's tables, and the query service's (its read model and the risk
#: service's tables, which are folded from ``events`` beside it).
PROCESSOR_TABLES = (ACCOUNTS_TABLE, COMMAND_OFFSETS_TABLE, COMMAND_CLAIMS_TABLE)
QUERY_TABLES = (
    ACCOUNT_VIEWS_TABLE,
    TRANSACTIONS_TABLE,
    COMMAND_OUTCOMES_TABLE,
    RISK_STATE_TABLE,
    ALERTS_TABLE,
)
BANK_TABLES = PROCESSOR_TABLES + QUERY_TABLES


def changelog_topic(app_id: str, table: str) -> str:
    """A table's changelog topic, named as Faust names it (``Collection._changelog_topic_name``)."""
    return f"{app_id}-{table}-changelog"


class EveryRoleTables:
    """The app's table manager, as the assignor sees it: its own changelog topics and
    those of every table of the bank, whichever role this worker runs."""

    def __init__(self, tables: Any, app_id: str) -> None:
        self._tables = tables
        self._bank = frozenset(changelog_topic(app_id, name) for name in BANK_TABLES)

    @property
    def changelog_topics(self) -> set[str]:
        return set(self._tables.changelog_topics) | self._bank

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tables, name)


class RoleAssignor(PartitionAssignor):
    """Faust's assignor, deciding what is a changelog with every role's tables."""

    def __init__(self, app: Any, replicas: int = 0) -> None:
        super().__init__(app, replicas=replicas)
        if getattr(self, "_table_manager", None) is not app.tables:
            raise SystemExit(
                "faust's PartitionAssignor no longer keeps its tables in _table_manager "
                "(faust-streaming 0.15.3 does): banking_app.runtime.assignor needs updating"
            )
        self._table_manager = EveryRoleTables(app.tables, app.conf.id)
