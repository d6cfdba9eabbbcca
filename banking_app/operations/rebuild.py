"""Rebuild the read model from the event log alone, with every worker stopped.

For a projection change, or a read model that ``replay --verify`` finds wrong. The
events topic is folded with the projection's own pure functions (``read_model``) and the
result is appended to the read-model changelogs, followed by a tombstone for every key
the fold no longer produces. On start each worker replays those changelog records into
its tables (from where its local copy had got to), so the rebuilt model replaces the old
one; on Kafka, compaction later drops the superseded records. Records go to the
partitions the projection agents would have written, so ``table_route`` finds them.
Events the workers had not yet projected are projected again when they start, which
changes nothing (the projection checks each seq).

The alerts are rebuilt the same way: the risk rules (``banking_app.risk.rules``) are
folded over the events again, into the ``risk-state`` and ``account-alerts`` changelogs,
and every alert the fold raises that the ``alerts`` topic does not hold yet (by
``alert_id``) is published there. The rules read event time only and alert ids are
deterministic, so an unchanged fold publishes nothing and stores the same alerts; a fold
under changed thresholds publishes the alerts it newly raises (the ones it no longer
raises stay on the topic, a log, but leave the alert table).

The changelogs are appended to rather than deleted and re-created: deletion is not
needed, and the embedded broker reports wrong end offsets for a re-created topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from banking_app.domain import event_from_dict
from banking_app.domain.events import outcome_key
from banking_app.operations.audit import read_topic, spill_store
from banking_app.query_service import read_model
from banking_app.query_service.projections import (
    account_views_table,
    command_outcomes_table,
    transactions_table,
)
from banking_app.risk import rules
from banking_app.risk.agent import THRESHOLDS, alerts_table, risk_state_table, with_alerts
from banking_app.runtime import codec
from banking_app.runtime.topics import alerts_topic

READ_MODEL_TABLES = (
    account_views_table,
    transactions_table,
    command_outcomes_table,
    risk_state_table,
    alerts_table,
)
# Spill-store prefixes: changelog keys not (yet) rewritten, and the fold's final values;
# the risk rules' states and alert lists, the alerts raised in order, and the ids of the
# alerts the alerts topic already holds.
STALE, VIEW, OUTCOME = "stale/", "view/", "outcome/"
RISK, RAISED, PUBLISHED = "risk/", "raised/", "published/"


def discard(store: MutableMapping[str, bytes], key: str) -> None:
    """Delete ``key`` if present (rocksdict's Rdict has no ``pop``)."""
    if key in store:
        del store[key]


class Refold:
    """Folds events into read-model changelog records, as the projection agents do.

    Views and outcomes are written once each, with their final value, after the whole
    fold: fewer records, and no batch that repeats a key (the embedded broker miscounts
    a partition's end offset for such a batch, which would cut the workers' recovery
    short).
    """

    def __init__(self, producer: AIOKafkaProducer, store: MutableMapping[str, bytes]) -> None:
        self.producer, self.store = producer, store
        self.pending: list[asyncio.Future[Any]] = []
        self.events = 0
        self.raised = 0
        self.published = 0

    def _get(self, key: str) -> Any:
        stored = self.store.get(key)
        return codec.loads(stored) if stored is not None else None

    async def _write(self, table: Any, key: str, value: Any, partition: int | None) -> None:
        topic = table.changelog_topic.get_topic_name()
        discard(self.store, f"{STALE}{topic}/{key}")
        await self.send(topic, key, codec.dumps(value), partition)

    async def send(self, topic: str, key: str, value: bytes | None, partition: int | None) -> None:
        self.pending.append(
            await self.producer.send(topic, value, key=codec.key(key), partition=partition)
        )
        if len(self.pending) >= 5000:
            await self.flush()

    async def flush(self) -> None:
        await asyncio.gather(*self.pending)
        self.pending.clear()

    async def remember_existing(self, record: ConsumerRecord) -> None:
        key = f"{STALE}{record.topic}/{record.key.decode()}"
        if record.value is None:
            discard(self.store, key)
        else:
            self.store[key] = str(record.partition).encode()

    async def __call__(self, record: ConsumerRecord) -> None:
        """Fold one event: history lines are written now (each key once), the rest kept."""
        try:
            event = event_from_dict(codec.loads(record.value))
        except (ValueError, KeyError, TypeError):
            return  # replay reports unreadable records; the projection skips them too
        self.events += 1
        view_key = f"{VIEW}{event.account_id}"
        kept = self._get(view_key)
        view = kept["view"] if kept else None
        try:
            updated = read_model.apply_to_view(view, event)
        except read_model.SeqGap:
            updated = view  # the log itself has the gap; ``replay`` reports it
        if updated is not view and updated is not None:
            item = read_model.history_item(event, updated)
            if item is not None:
                key = read_model.history_key(event.account_id, item["seq"])
                await self._write(transactions_table, key, item, record.partition)
            self.store[view_key] = codec.dumps({"partition": record.partition, "view": updated})
        if event.command_id:
            # A refused reuse of an id is filed under its own use, as the agent files it.
            key = f"{OUTCOME}{outcome_key(event)}"
            outcome = read_model.apply_to_outcome(self._get(key), event)
            self.store[key] = codec.dumps(outcome)
        if rules.reads(event):
            self.detect(event, record.partition)

    def detect(self, event: Any, partition: int) -> None:
        """The risk rules on one event, as ``detect_alerts`` runs them."""
        key = f"{RISK}{event.account_id}"
        kept = self._get(key)
        state = kept["state"] if kept else None
        try:
            new, alerts = rules.step(state, event, THRESHOLDS)
        except ValueError:
            return  # the agent skips it too (an occurred_at that is no time)
        if new is state:
            return
        listing = with_alerts(kept["alerts"] if kept else None, event.account_id, alerts)
        self.store[key] = codec.dumps({"partition": partition, "state": new, "alerts": listing})
        for alert in alerts:
            # Numbered in the order raised, which the spill store's sorted keys keep.
            self.store[f"{RAISED}{self.raised:012d}"] = codec.dumps(
                {"partition": partition, "alert": alert}
            )
            self.raised += 1

    async def remember_published(self, record: ConsumerRecord) -> None:
        try:
            alert_id = codec.loads(record.value)["alert_id"]
        except (ValueError, KeyError, TypeError):
            return
        self.store[f"{PUBLISHED}{alert_id}"] = b""

    async def write_final_values(self) -> None:
        for key, value in list(self.store.items()):
            if key.startswith(VIEW):
                kept = codec.loads(value)
                await self._write(
                    account_views_table, key.removeprefix(VIEW), kept["view"], kept["partition"]
                )
            elif key.startswith(OUTCOME):
                # Keyed by command id (or use): the partition the outcome agent writes it to.
                await self._write(
                    command_outcomes_table, key.removeprefix(OUTCOME), codec.loads(value), None
                )
            elif key.startswith(RISK):
                kept, account = codec.loads(value), key.removeprefix(RISK)
                await self._write(risk_state_table, account, kept["state"], kept["partition"])
                if kept["alerts"] is not None and kept["alerts"]["alerts"]:
                    await self._write(alerts_table, account, kept["alerts"], kept["partition"])
        await self.flush()

    async def publish_missing_alerts(self) -> None:
        """Publish, in the order raised, every alert the topic does not hold yet."""
        topic = alerts_topic.get_topic_name()
        kept = sorted((key, value) for key, value in self.store.items() if key.startswith(RAISED))
        for _, value in kept:
            raised = codec.loads(value)
            alert = raised["alert"]
            if f"{PUBLISHED}{alert['alert_id']}" in self.store:
                continue
            self.store[f"{PUBLISHED}{alert['alert_id']}"] = b""
            await self.send(topic, alert["account_id"], codec.dumps(alert), raised["partition"])
            self.published += 1
        await self.flush()

    async def tombstone_stale(self) -> int:
        stale = [(key, int(value)) for key, value in self.store.items() if key.startswith(STALE)]
        for key, partition in stale:
            topic, _, table_key = key.removeprefix(STALE).partition("/")
            await self.send(topic, table_key, None, partition)
        await self.flush()
        return len(stale)


async def rebuild(bootstrap: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        with spill_store() as store:
            refold = Refold(producer, store)
            for table in READ_MODEL_TABLES:
                topic = table.changelog_topic.get_topic_name()
                await read_topic(bootstrap, topic, refold.remember_existing, topic)
            topic = alerts_topic.get_topic_name()
            await read_topic(bootstrap, topic, refold.remember_published, topic)
            await read_topic(bootstrap, "events", refold, "events")
            await refold.write_final_values()
            await refold.publish_missing_alerts()
            stale = await refold.tombstone_stale()
    finally:
        await producer.stop()
    return [
        f"folded {refold.events} events into the read-model changelogs",
        f"deleted {stale} read-model keys the events no longer produce",
        f"the risk rules raised {refold.raised} alerts; {refold.published} of them were not "
        "on the alerts topic and were published",
    ]
