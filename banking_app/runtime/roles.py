"""Worker roles: which of the bank's services a worker runs, and what it can tell of the
others from its consumer group.

One app, one codebase, one consumer group (``banking-app``, the app id): a worker
registers only its role's agents, tables and views (``banking_app.app``), so it
subscribes only to its role's topics, and Faust's assignor gives each topic's
partitions to the members subscribed to it (``runtime.assignor``). The roles:

- ``command``: the command service, the POST views. Stateless and in no group: Faust's
  ``producer_only`` mode, a web server and a producer. Reads go to a query worker.
- ``processor``: the event processor, ``process_commands`` and its three tables.
- ``query``: the query service, the projections, the read tables, the GET views, and
  the risk service (it reads ``events`` beside the projections).
- ``all``: all of them, the default: the bank as one worker.

Every role serves every route: the POST views need nothing but a producer, so each role
answers them itself; a worker without the read model forwards the reads to a query
worker (``web.reads``).

Reads the group's changelog distribution from faust-streaming 0.15.3's
``PartitionAssignor.changelog_distribution`` (``faust/assignor/partition_assignor.py``),
the map of which worker URL holds which active changelog partitions, the same map
``app.router`` routes by.
"""

from __future__ import annotations

from typing import Any

from banking_app.runtime.assignor import PROCESSOR_TABLES, QUERY_TABLES, changelog_topic
from banking_app.runtime.faust_app import app
from banking_app.runtime.settings import settings
from banking_app.runtime.topics import ACCOUNT_VIEWS_TABLE, ACCOUNTS_TABLE

ROLE = settings.role


def runs_processor(role: str = ROLE) -> bool:
    return role in ("all", "processor")


def runs_query(role: str = ROLE) -> bool:
    return role in ("all", "query")


def in_group(role: str = ROLE) -> bool:
    """Whether the role consumes (and so is a member of the consumer group)."""
    return role != "command"


def tables_of(role: str) -> tuple[str, ...]:
    return (PROCESSOR_TABLES if runs_processor(role) else ()) + (
        QUERY_TABLES if runs_query(role) else ()
    )


def _distribution() -> dict[str, Any]:
    return dict(app.assignor.changelog_distribution or {})


def holders(table: str) -> dict[str, set[int]]:
    """The group's workers (by URL) holding active partitions of ``table``."""
    topic = changelog_topic(app.conf.id, table)
    found: dict[str, set[int]] = {}
    for url, topics in _distribution().items():
        partitions = set(topics.get(topic, ()))
        if partitions:
            found[str(url).rstrip("/")] = partitions
    return found


def unprocessed_partitions() -> list[int]:
    """The partitions of ``commands`` no event processor holds in the group's current
    assignment: commands sent to them wait, undecided, until a processor joins."""
    held: set[int] = set()
    for partitions in holders(ACCOUNTS_TABLE).values():
        held |= partitions
    return sorted(set(range(settings.partitions)) - held)


def query_urls() -> list[str]:
    """Where to send a read this worker cannot answer: ``BANKING_QUERY_URL`` when set,
    else the group's workers holding the read model (this one left out)."""
    if settings.query_urls:
        return list(settings.query_urls)
    me = str(app.conf.canonical_url).rstrip("/")
    return sorted(url for url in holders(ACCOUNT_VIEWS_TABLE) if url != me)
