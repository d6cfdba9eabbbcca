"""``rebuild-projections`` folds the risk rules as the agent does, and publishes only the
alerts the alerts topic lacks."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from stories import Story

from banking_app.operations.rebuild import Refold
from banking_app.risk.agent import alerts_table, risk_state_table
from banking_app.runtime import codec


class SentRecords:
    """Stands in for the producer: keeps what was sent, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes, partition: Any) -> Any:
        self.sent.append((topic, key, codec.loads(value) if value is not None else None))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def records(events: list[Any]) -> list[Any]:
    return [
        SimpleNamespace(
            value=codec.dumps(event.to_dict()), partition=3, topic="events", offset=offset
        )
        for offset, event in enumerate(events)
    ]


async def rebuilt(events: list[Any], on_topic: list[bytes]) -> tuple[Refold, SentRecords]:
    producer = SentRecords()
    refold = Refold(producer, {})  # type: ignore[arg-type]
    for value in on_topic:
        await refold.remember_published(SimpleNamespace(value=value))  # type: ignore[arg-type]
    for record in records(events):
        await refold(record)
    await refold.write_final_values()
    await refold.publish_missing_alerts()
    return refold, producer


async def test_a_rebuild_stores_the_same_alerts_and_publishes_only_missing_ones() -> None:
    story = Story("reb")
    for minute in range(6):
        story.withdraw(10, minute)
    story.events.append(story.events[2])  # a copy on the log: counted once
    first, producer = await rebuilt(story.events, [])
    [(_, key, alert)] = [sent for sent in producer.sent if sent[0] == "alerts"]
    assert (key, alert["rule"], first.published) == (b"reb", "velocity", 1)
    changelogs = {name: value for name, _, value in producer.sent}
    assert changelogs[alerts_table.changelog_topic.get_topic_name()]["alerts"] == [alert]
    assert changelogs[risk_state_table.changelog_topic.get_topic_name()]["seq"] == 7

    again, producer = await rebuilt(story.events, [codec.dumps(alert), b"junk"])
    assert (again.raised, again.published) == (1, 0)
    assert [sent for sent in producer.sent if sent[0] == "alerts"] == []
