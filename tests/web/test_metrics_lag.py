"""``banking_consumer_lag`` reads the partitions' end offsets from the broker when
scraped, and falls back on the last fetched ones when the broker does not answer.

The consumer here is a stand-in with the four things the gauge reads; the gauge on a
real worker and broker is in tests/http/test_api.py's metrics test.
"""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP
from prometheus_client import generate_latest

from banking_app.app import app
from banking_app.runtime.metrics import registry
from banking_app.web import metrics_endpoint

COMMANDS = [TP("commands", 0), TP("commands", 1)]


class Consumer:
    def __init__(self, fetched: dict[TP, int], ends: dict[TP, int] | None) -> None:
        self.fetched, self.ends = fetched, ends

    def assignment(self) -> set[TP]:
        return set(COMMANDS)

    def highwater(self, tp: TP) -> int | None:
        return self.fetched.get(tp)

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        if self.ends is None:
            await asyncio.sleep(3600)  # a broker that does not answer
        return {tp: self.ends[tp] for tp in partitions if self.ends is not None}

    def owed(self, tp: TP) -> int:
        return 100


@pytest.fixture(autouse=True)
def agents_subscribed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Acks are on for the agents' topics once a worker has subscribed them."""
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: topic == "commands")


def gauge() -> dict[int, float]:
    text = generate_latest(registry).decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("banking_consumer_lag{") and 'topic="commands"' in line:
            partition = int(line.split('partition="')[1].split('"')[0])
            found[partition] = float(line.rsplit(" ", 1)[1])
    return found


async def test_the_lag_is_the_brokers_end_offset_less_what_the_agent_is_owed() -> None:
    # The last fetch saw 150 and 100; the broker has had 40,000 and 250 written since.
    consumer = Consumer(
        {COMMANDS[0]: 150, COMMANDS[1]: 100}, {COMMANDS[0]: 40_100, COMMANDS[1]: 350}
    )
    await metrics_endpoint.refresh_lag(consumer)
    assert gauge() == {0: 40_000, 1: 250}


async def test_without_an_answer_the_last_fetched_end_offsets_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_endpoint, "END_OFFSETS_TIMEOUT", 0.05)
    consumer = Consumer({COMMANDS[0]: 150, COMMANDS[1]: 90}, None)
    await metrics_endpoint.refresh_lag(consumer)
    assert gauge() == {0: 50, 1: 0}  # never below 0
