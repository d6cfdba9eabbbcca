"""``rebuild-projections`` files a refused reuse of a command id as the agents do."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from banking_app.domain import command_ids, decide
from banking_app.domain import commands as cmd
from banking_app.operations.rebuild import Refold
from banking_app.query_service.projections import command_outcomes_table
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


async def test_a_refused_reuse_is_rebuilt_under_its_own_use() -> None:
    opened = cmd.CreateAccount(command_id="r0", account_id="ria", owner="Ria", currency="EUR")
    state_events = decide(None, opened, "2026-01-01T00:00:00.000Z").events
    other = cmd.Deposit(command_id="r0", account_id="elsewhere", amount=1)
    refused = command_ids.reused_rejection(
        other, command_ids.fingerprint(other), (3, 0), "2026-01-01T00:00:03.000Z"
    )
    producer = SentRecords()
    refold = Refold(producer, {})  # type: ignore[arg-type]
    for event in (*state_events, refused):
        record = SimpleNamespace(
            value=codec.dumps(event.to_dict()), partition=0, topic="events", offset=0
        )
        await refold(record)  # type: ignore[arg-type]
    await refold.write_final_values()
    topic = command_outcomes_table.changelog_topic.get_topic_name()
    outcomes = {key.decode(): value for name, key, value in producer.sent if name == topic}
    assert outcomes["r0"]["status"] == "accepted"
    assert [e["type"] for e in outcomes["r0"]["events"]] == ["AccountCreated"]
    apart = outcomes[f"r0/reused/{refused.event_id}"]
    assert (apart["status"], apart["reason"]) == ("rejected", "COMMAND_ID_REUSED")
