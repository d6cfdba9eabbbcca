"""Baseline (b): the naive Faust agent the issue describes.

``table[account] += amount`` and one event per command: no validation, no idempotency,
no seq, no read model. Run as its own worker: ``python -m bench.naive_app worker``.
"""

from __future__ import annotations

import os

import faust
import orjson

#: Set per trial of the benchmark, so a trial never resumes an earlier one's topics.
RUN = os.environ.get("BENCH_RUN", "")

app = faust.App(
    f"bench-naive{RUN}",
    broker=os.environ.get("KAFKA_BROKER", "kafka://localhost:9092"),
    store="rocksdb://",
    datadir=os.environ.get("BENCH_DATADIR", "bench-naive-data"),
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6099")),
    topic_partitions=int(os.environ.get("BANKING_PARTITIONS", "8")),
    broker_rebalance_timeout=5.0,
    broker_session_timeout=10.0,
    autodiscover=False,
)
commands = app.topic(
    f"naive-commands{RUN}",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    internal=True,
)
events = app.topic(
    f"naive-events{RUN}",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    internal=True,
)
balances = app.Table("naive-balances", default=int, key_type=bytes, value_type=int)


@app.agent(commands)
async def apply_deposits(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        command = orjson.loads(event.message.value)
        key = event.message.key
        balances[key] += command["amount"]
        await events.send(
            key=key,
            value=orjson.dumps({"account_id": command["account_id"], "balance": balances[key]}),
        )


if __name__ == "__main__":
    app.main()
