"""Baseline (a): the transport's own cost. A plain aiokafka loop that consumes commands
and produces one event per command, with no state. Runs as its own process."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main(bootstrap: str, source: str, target: str) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{source}",  # a new group for each trial's topic
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    print("ready", flush=True)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            pending = []
            for records in batch.values():
                for record in records:
                    command = orjson.loads(record.value)
                    event = {
                        "type": "MoneyDeposited",
                        "account_id": command["account_id"],
                        "amount": command["amount"],
                    }
                    pending.append(await producer.send(target, orjson.dumps(event), key=record.key))
            if pending:
                await asyncio.gather(*pending)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    if os.environ.get("FAUST_LOOP") == "uvloop":
        import uvloop

        uvloop.run(main(*sys.argv[1:4]))
    else:
        asyncio.run(main(*sys.argv[1:4]))
