"""``/health`` while a worker starts: what the recovery has left, in one process.

The bulk restore (``runtime.restore``) reports its progress as it reads; Faust's
recovery then reports what its active partitions lack (highwater minus offset).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faust.types import TP

from banking_app.app import app  # the views and tables registered
from banking_app.runtime import restore
from banking_app.web.health import recovery_left


@pytest.fixture()
def recovery_state() -> Iterator[None]:
    recovery = app.tables.recovery
    saved = dict(recovery.active_highwaters), dict(recovery.active_offsets)
    try:
        yield
    finally:
        restore.progress = restore.Progress()
        for mapping, values in zip(
            (recovery.active_highwaters, recovery.active_offsets), saved, strict=True
        ):
            mapping.clear()
            mapping.update(values)


def test_a_bulk_restore_under_way_shows_what_it_has_left(recovery_state: None) -> None:
    restore.progress = restore.Progress(running=True, partitions_left=3, records_left=41_000)
    assert recovery_left()["bulk_restore"] == {
        "running": True,
        "partitions_left": 3,
        "records_left": 41_000,
    }


def test_faust_s_recovery_shows_the_partitions_behind_and_their_records(
    recovery_state: None,
) -> None:
    recovery = app.tables.recovery
    behind, done = TP("banking-app-accounts-changelog", 0), TP("banking-app-accounts-changelog", 1)
    recovery.active_highwaters.update({behind: 120, done: 50})
    recovery.active_offsets.update({behind: 20, done: 50})
    assert recovery_left()["changelogs"] == {"partitions_left": 1, "records_left": 100}
