"""Quiet takes (``QuietTakeStream.take_quiet``) under Faust's agent harness.

A take is handled when its stream goes quiet, when it is full, or when it has waited
its window: large takes under load, no waiting out a window for a lone command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
import pytest

from banking_app.runtime.streams import QuietTakeStream

WAIT = 30.0  # generous: only a broken take waits this long

quiet_app = faust.App(
    "quiet-take-tests",
    store="memory://",
    Stream="banking_app.runtime.streams:QuietTakeStream",
    autodiscover=False,
)
inputs = quiet_app.topic("quiet-take-inputs", value_type=bytes, value_serializer="raw")
#: Each test sets the take's limits and reads the takes seen.
limits: dict[str, float] = {}
seen: list[list[bytes]] = []


@quiet_app.agent(inputs)
async def collect(stream: faust.StreamT[bytes]) -> Any:
    assert isinstance(stream, QuietTakeStream)
    max_bytes = limits.get("max_bytes")
    async for take in stream.take_quiet(
        int(limits["max"]),
        within=limits["within"],
        quiet=limits["quiet"],
        max_bytes=None if max_bytes is None else int(max_bytes),
    ):
        seen.append([event.value for event in take])
        yield len(take)


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.01)


def taken() -> list[bytes]:
    return [value for take in seen for value in take]


async def run(
    max_: int,
    within: float,
    quiet: float,
    values: list[bytes],
    pause: float,
    max_bytes: int | None = None,
) -> None:
    limits.clear()
    limits.update(max=max_, within=within, quiet=quiet)
    if max_bytes is not None:
        limits["max_bytes"] = max_bytes
    seen.clear()
    async with collect.test_context() as agent:
        for value in values:
            await agent.put(value, wait=False)
            if pause:
                await asyncio.sleep(pause)
        await until(lambda: len(taken()) == len(values))


async def test_a_lone_input_is_taken_when_the_stream_goes_quiet_not_after_the_window() -> None:
    started = time.monotonic()
    await run(max_=1000, within=3600.0, quiet=0.05, values=[b"only"], pause=0)
    assert seen == [[b"only"]]
    assert time.monotonic() - started < WAIT  # an hour's window was not waited out


async def test_inputs_that_arrive_together_are_taken_together_up_to_the_limit() -> None:
    values = [str(n).encode() for n in range(25)]
    await run(max_=10, within=3600.0, quiet=1.0, values=values, pause=0)
    assert [len(take) for take in seen] == [10, 10, 5]
    assert taken() == values  # in order, each once


async def test_a_take_ends_when_its_values_reach_the_byte_budget() -> None:
    """A record may bundle many inputs: a take is bounded by bytes too, not records only.

    Counted alone, a thousand bundles of legs made one take of some 100,000 inputs."""
    bundles = [bytes([65 + n]) * 400 for n in range(5)]
    small = [str(n).encode() for n in range(6)]
    await run(max_=1000, within=3600.0, quiet=1.0, values=bundles + small, pause=0, max_bytes=1000)
    # 400 + 400 + 400 reach 1,000: the record that crosses the budget ends its take;
    # the last two bundles and the small records (806 bytes) stay under it.
    assert [len(take) for take in seen] == [3, 8]
    assert taken() == bundles + small  # in order, each once


async def test_a_take_that_keeps_filling_is_handled_at_the_end_of_its_window() -> None:
    # An input every 10 ms never leaves the stream quiet for a second; the window of
    # 0.2 s ends each take long before the 100 inputs are all in.
    values = [str(n).encode() for n in range(100)]
    await run(max_=1000, within=0.2, quiet=1.0, values=values, pause=0.01)
    assert len(seen) > 1
    assert taken() == values


async def test_acknowledging_a_large_take_lets_other_tasks_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The web views share the event loop: a take's acknowledgements take turns with them."""
    acked = 0
    between: list[int] = []  # acknowledgement counts another task saw mid-take
    acknowledge = QuietTakeStream.ack

    async def counting_ack(self: QuietTakeStream, event: Any) -> bool:
        nonlocal acked
        acked += 1
        return await acknowledge(self, event)

    async def other_task() -> None:
        while True:
            if 0 < acked < 200:
                between.append(acked)
            await asyncio.sleep(0)

    monkeypatch.setattr(QuietTakeStream, "ack", counting_ack)
    watcher = asyncio.create_task(other_task())
    try:
        values = [str(n).encode() for n in range(200)]
        await run(max_=1000, within=3600.0, quiet=0.05, values=values, pause=0)
        await until(lambda: acked == 200)
    finally:
        watcher.cancel()
    assert [len(take) for take in seen] == [200]
    assert between, "no other task ran while the take was acknowledged"
