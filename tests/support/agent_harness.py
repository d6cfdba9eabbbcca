"""The command agent under Faust's agent harness: helpers the agent tests share.

``harness`` (a fixture in tests/event_processor/conftest.py) runs the real agent and
tables in memory, with a ``RecordingOutbox`` in place of the broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from banking_app.domain import parse_command
from banking_app.event_processor import agent as agents
from banking_app.event_processor import leg_seal
from banking_app.event_processor.agent import Handled, process_commands
from banking_app.event_processor.idempotency import AccountRow
from banking_app.event_processor.tables import accounts_table
from banking_app.runtime import codec
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import RecordingOutbox
from banking_app.runtime.settings import settings
from banking_app.runtime.tables import get_json
from banking_app.runtime.topics import events_topic, partition_for


async def running_harness() -> AsyncIterator[Any]:
    assert str(app.conf.store).startswith("memory:"), "tests/conftest.py sets it"
    app.finalize()
    outbox = RecordingOutbox()
    previous, agents.processor.outbox = agents.processor.outbox, outbox
    try:
        async with process_commands.test_context() as agent:
            agent.outbox = outbox
            yield agent
    finally:
        agents.processor.outbox = previous
        accounts_table.data.clear()


async def send(agent: Any, value: dict[str, Any] | bytes, key: str | None = None) -> Handled:
    """Put one record where Kafka would: keyed by the account, on its partition."""
    if isinstance(value, dict):
        key = key if key is not None else value["account_id"]
        value = orjson.dumps(value)
    key_bytes = codec.key(key) if key is not None else None
    partition = partition_for(key_bytes, 8) if key_bytes else 0
    event = await agent.put(value, key=key_bytes, partition=partition)
    del event
    # The harness numbers the agent's results in order: this record's take is the last.
    [handled] = agent.results[max(agent.results)]  # one record, so a take of one
    return handled


async def send_take(agent: Any, account_id: str, commands: list[dict[str, Any]]) -> None:
    """Put the commands on the account's partition at once, so one take decides them."""
    key = codec.key(account_id)
    partition = partition_for(key, 8)
    async with agent.new_value_processed:
        for command in commands:
            await agent.put(orjson.dumps(command), key=key, partition=partition, wait=False)
        await agent.new_value_processed.wait()


def events(agent: Any) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in agent.outbox.on(events_topic)]


def balance(account_id: str) -> int:
    row = AccountRow.from_dict(get_json(accounts_table, account_id))
    assert row.account is not None
    return row.account.balance


def create_account(command_id: str, account_id: str, owner: str, **fields: Any) -> dict[str, Any]:
    """A CREATE_ACCOUNT command as a client sends it: in EUR, unless ``fields`` say otherwise."""
    return {
        "type": "CREATE_ACCOUNT",
        "command_id": command_id,
        "account_id": account_id,
        "owner": owner,
        "currency": "EUR",
        **fields,
    }


async def open_accounts(agent: Any, *accounts: str) -> None:
    for account in accounts:
        opened = await send(agent, create_account(f"open-{account}", account, account))
        assert opened is Handled.APPLIED


async def send_bundle(agent: Any, value: bytes, partition: int) -> list[Handled]:
    """Put a bundle record where the command agent sends it; what became of each leg."""
    event = await agent.put(value, key=b"", partition=partition)
    return agent.results[event.message.offset]  # type: ignore[no-any-return]


def credit(command_id: str, to: str, amount: int, source: str = "src") -> dict[str, Any]:
    """A credit leg as a worker sends it: sealed with the workers' key."""
    leg = {
        "type": "TRANSFER_CREDIT",
        "command_id": command_id,
        "account_id": to,
        "from_account_id": source,
        "amount": amount,
        "currency": "EUR",
    }
    return leg_seal.sealed(parse_command(leg), settings.leg_key_bytes())


def bundle(*legs: dict[str, Any], timestamp: int = 1_700_000_000_000) -> bytes:
    return orjson.dumps([{"timestamp": timestamp, "command": leg} for leg in legs])
