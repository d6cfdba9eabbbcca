"""The bytes a partition may hold in flight (``runtime.flow``): a story, then properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from banking_app.runtime.flow import Window

MIB = 1 << 20


def test_a_partition_is_held_at_its_budget_and_fetched_again_at_half() -> None:
    window = Window(4 * MIB)
    assert window.handed("commands-0", 3 * MIB) is False  # under the budget
    assert not window.holds("commands-0")
    assert window.handed("commands-0", 1 * MIB) is True  # at it: hold
    assert window.holds("commands-0")
    assert window.handed("commands-0", 1 * MIB) is False  # held already: said once
    assert window.handed("commands-1", 1 * MIB) is False  # its neighbour is not held
    assert window.done("commands-0", 2 * MIB) is False  # 3 MiB left: still held
    assert window.holds("commands-0")
    assert window.done("commands-0", 1 * MIB) is False  # 2 MiB, half: not below it
    assert window.holds("commands-0")
    assert window.done("commands-0", 1 * MIB) is True  # 1 MiB: fetched again
    assert not window.holds("commands-0")
    assert window.bytes == {"commands-0": 1 * MIB, "commands-1": 1 * MIB}


def test_one_record_larger_than_the_budget_is_let_through_and_done_with() -> None:
    window = Window(1 * MIB)
    assert window.handed("commands-0", 3 * MIB) is True
    assert window.done("commands-0", 3 * MIB) is True
    assert window.bytes["commands-0"] == 0


def test_no_budget_holds_nothing() -> None:
    window = Window(0)
    assert window.handed("commands-0", 100 * MIB) is False
    assert window.done("commands-0", 100 * MIB) is False
    assert window.bytes == {} and window.held == set()


def test_a_forgotten_partition_starts_again_from_nothing() -> None:
    window = Window(1 * MIB)
    window.handed("commands-0", 2 * MIB)
    window.forget(["commands-0"])
    assert not window.holds("commands-0")
    assert window.done("commands-0", 2 * MIB) is False  # a record from before: ignored
    assert window.bytes == {}


calls = st.lists(
    st.tuples(
        st.sampled_from(["handed", "done", "forget"]),
        st.sampled_from(["a", "b"]),
        st.integers(min_value=-10, max_value=5 * MIB),
    ),
    max_size=60,
)


@given(budget=st.integers(min_value=1, max_value=4 * MIB), script=calls)
def test_the_window_s_invariants_hold_whatever_the_order(
    budget: int, script: list[tuple[str, str, int]]
) -> None:
    window = Window(budget)
    open_holds = {"a": 0, "b": 0}
    for call, tp, size in script:
        if call == "handed":
            was_held = window.holds(tp)
            if window.handed(tp, size):
                assert not was_held
                open_holds[tp] += 1
        elif call == "done":
            was_held = window.holds(tp)
            if window.done(tp, size):
                assert was_held
                open_holds[tp] -= 1
        else:
            window.forget([tp])
            open_holds[tp] = 0
        for each in ("a", "b"):
            held = window.bytes.get(each, 0)
            assert held >= 0
            if window.holds(each):
                assert held * 2 >= budget
            if held >= budget:
                assert window.holds(each)
            assert open_holds[each] == (1 if window.holds(each) else 0)
