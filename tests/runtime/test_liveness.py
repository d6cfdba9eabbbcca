"""When is an agent stalled? Records waiting, and no take handled for a while."""

from __future__ import annotations

from banking_app.runtime.liveness import Liveness, Stall


def test_an_agent_is_stalled_only_with_records_waiting_and_no_progress() -> None:
    watch = Liveness(stall_seconds=30)

    # First seen with records waiting: its clock starts now, not at the epoch.
    assert watch.stalled({"commands": 5}, now=1000.0) == []
    assert watch.stalled({"commands": 9}, now=1029.0) == []
    assert watch.stalled({"commands": 12}, now=1030.0) == [Stall("commands", 12, 30.0)]

    # A handled take restarts the clock.
    watch.handled("commands", now=1031.0)
    assert watch.stalled({"commands": 12}, now=1060.0) == []
    assert watch.stalled({"commands": 12}, now=1061.0) == [Stall("commands", 12, 30.0)]


def test_an_idle_agent_with_nothing_to_read_is_never_stalled() -> None:
    watch = Liveness(stall_seconds=30)
    assert watch.stalled({"events": 0}, now=0.0) == []
    assert watch.stalled({"events": 0}, now=3600.0) == []
    # Records arriving after an hour of idleness are not an hour overdue.
    assert watch.stalled({"events": 4}, now=3601.0) == []
    assert watch.stalled({"events": 4}, now=3629.0) == []
    assert watch.stalled({"events": 4}, now=3630.0) == [Stall("events", 4, 30.0)]


def test_each_topic_has_its_own_clock() -> None:
    watch = Liveness(stall_seconds=10)
    watch.stalled({"commands": 1, "events": 1}, now=0.0)
    watch.handled("events", now=5.0)
    assert watch.stalled({"commands": 1, "events": 1}, now=10.0) == [Stall("commands", 1, 10.0)]
