"""Replay and audit: fold the ``events`` topic from the beginning, check the books, and
compare the result with the live tables.

The fold uses the same pure ``evolve`` as the command side. The ids already seen live in
a temporary RocksDB (rocksdict), so memory stays bounded by the number of accounts and
transfers in flight, not by the length of the log.
"""

from __future__ import annotations

import inspect
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rocksdict import Rdict

from banking_app.domain import event_from_dict
from banking_app.domain.accounts import Account
from banking_app.domain.ledger import Ledger
from banking_app.event_processor.idempotency import AccountRow
from banking_app.runtime import codec
from banking_app.runtime.offsets import true_end_offsets

#: The account fields the read model keeps, compared with the fold by ``--verify``.
VIEW_FIELDS = (
    "owner",
    "currency",
    "balance",
    "overdraft_limit",
    "daily_withdrawal_limit",
    "daily_transfer_limit",
    "in_flight",
    "status",
    "version",
    "created_at",
    "updated_at",
)


class Progress:
    """A bar on a terminal, plain lines every few seconds otherwise (logs, CI)."""

    def __init__(self, label: str, total: int, out: TextIO = sys.stderr) -> None:
        self.label, self.total, self.out = label, max(total, 1), out
        self.done = 0
        self.tty = out.isatty()
        self.last = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last < (0.1 if self.tty else 5.0) and self.done < self.total:
            return
        self.last = now
        share = min(self.done / self.total, 1.0)
        if self.tty:
            bar = "#" * int(share * 30)
            self.out.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}")
            if self.done >= self.total:
                self.out.write("\n")
        else:
            self.out.write(f"{self.label}: {self.done}/{self.total} ({share:.0%})\n")
        self.out.flush()


async def read_topic(
    bootstrap: str,
    topic: str,
    handle: Callable[[ConsumerRecord], Awaitable[None] | None],
    label: str | None = None,
) -> int:
    """Call ``handle`` on every record of ``topic`` up to its end when the read began."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        if not tps:
            return 0
        consumer.assign(tps)
        ends = await true_end_offsets(bootstrap, await consumer.end_offsets(tps))
        starts = await consumer.beginning_offsets(tps)
        progress = Progress(label or topic, sum(ends[tp] - starts[tp] for tp in tps))
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        count = 0
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        handled = handle(record)
                        if inspect.isawaitable(handled):
                            await handled
                        count += 1
                progress.advance(len(records))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return count
    finally:
        await consumer.stop()


@contextmanager
def spill_store() -> Iterator[MutableMapping[str, bytes]]:
    with tempfile.TemporaryDirectory(prefix="banking-replay-") as directory:
        store = Rdict(directory)
        try:
            yield store  # type: ignore[misc]
        finally:
            store.close()


@dataclass
class Report:
    ledger: Ledger
    records: int = 0
    unreadable: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.unreadable + self.ledger.check() + self.differences

    def render(self) -> str:
        ledger = self.ledger
        open_accounts = sum(1 for a in ledger.accounts.values() if a.is_open)
        lines = [
            f"events read      {self.records} ({ledger.duplicates} redelivered copies dropped)",
            f"accounts         {len(ledger.accounts)} ({open_accounts} open)",
            f"commands         {ledger.commands_with_outcome} with an outcome",
            "events by type",
            *(f"  {kind:<18} {count}" for kind, count in sorted(ledger.events_by_type.items())),
            "money by currency (minor units)",
        ]
        balances, flight = ledger.balances(), ledger.money_in_flight()
        for currency in sorted(set(balances) | set(flight) | set(ledger.deposited)):
            lines.append(
                f"  {currency or '?':<4} balances {balances[currency]}  in flight "
                f"{flight[currency]}  deposited {ledger.deposited[currency]}  withdrawn "
                f"{ledger.withdrawn[currency]}"
            )
        problems = self.problems
        lines.append(f"problems         {len(problems)}")
        lines += [f"  {problem}" for problem in problems[:200]]
        if len(problems) > 200:
            lines.append(f"  … and {len(problems) - 200} more")
        return "\n".join(lines)


async def replay(bootstrap: str, seen: MutableMapping[str, bytes]) -> Report:
    report = Report(Ledger(seen=seen))

    def fold(record: ConsumerRecord) -> None:
        try:
            event = event_from_dict(codec.loads(record.value))
        except (ValueError, KeyError, TypeError) as exc:
            report.unreadable.append(f"events[{record.partition}]@{record.offset}: {exc}")
            return
        report.ledger.apply(event)

    report.records = await read_topic(bootstrap, "events", fold, "events")
    return report


async def latest_values(bootstrap: str, topic: str) -> dict[str, Any]:
    """The table a changelog describes: the last value of every key (None: deleted)."""
    table: dict[str, Any] = {}

    def keep(record: ConsumerRecord) -> None:
        key = record.key.decode()
        table[key] = codec.loads(record.value) if record.value is not None else None

    await read_topic(bootstrap, topic, keep, topic)
    return {key: value for key, value in table.items() if value is not None}


def compare(ledger: Ledger, rows: dict[str, Any], views: dict[str, Any]) -> list[str]:
    """Where the command side's table or the read model disagree with the fold."""
    differences = []
    stored: dict[str, Account] = {}
    for key, value in rows.items():
        account = AccountRow.from_dict(value).account
        if account is not None:
            stored[key] = account
    for account_id in sorted(set(ledger.accounts) | set(stored) | set(views)):
        folded = ledger.accounts.get(account_id)
        table = stored.get(account_id)
        if table != folded:
            differences.append(
                f"command side, account {account_id}: table {table} != fold {folded}"
            )
        view = views.get(account_id)
        expected = None if folded is None else {f: getattr(folded, f) for f in VIEW_FIELDS}
        actual = None if view is None else {f: view.get(f) for f in VIEW_FIELDS}
        if actual != expected:
            differences.append(
                f"read model, account {account_id}: view {actual} != fold {expected}"
            )
    return differences
