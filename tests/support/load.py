"""Load, a reference model and quiescence checks for the fault-tolerance tests.

The fault tests (``tests/faults``) send a steady stream of commands while they kill,
stop or pause things, then wait until the system is quiet and compare what the bank did
with ``ReferenceBank``, a few lines of Python that apply the bank's rules to the commands
in the order they were sent.

Outcomes that depend on timing are avoided on purpose, so the reference is exact: a
transfer's credit reaches its destination some time after the debit, so an account's
balance when its next command is decided is not known in advance. The workload therefore
only lets an account spend what is certain to be there (its ``floor``: its own deposits
minus its own withdrawals and outgoing transfers, ignoring any credit that may or may
not have arrived yet), and a withdrawal meant to be refused asks for more than all the
money of its currency ever deposited. Either way the outcome does not depend on when
credits arrive, and final balances are then exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from banking_app.domain import event_from_dict
from banking_app.domain.events import TERMINAL_TYPES
from banking_app.domain.ledger import Ledger
from support.cluster import Broker, Worker, command

Command = dict[str, Any]
Event = dict[str, Any]

#: More than all the money the workload ever deposits: a withdrawal of this is refused
#: whatever credits have or have not arrived.
TOO_MUCH = 10**13
#: Seconds to wait for the system to become quiet, and for ``replay --verify`` to agree.
SETTLE_TIMEOUT = 150.0
VERIFY_TIMEOUT = 90.0
#: Seconds without a single new event, while commands are unfinished, after which the
#: system is taken to have stopped: longer than any restart or takeover in these tests.
STALL_TIMEOUT = 60.0


# ----------------------------------------------------------------- reference model


@dataclass(frozen=True)
class Outcome:
    """What a command must end in: its terminal event type and, if refused, the reason."""

    type: str
    reason: str | None = None


@dataclass
class ReferenceBank:
    """The bank's rules for the commands the fault tests send (no overdraft).

    A close is only sent where its outcome is certain (see ``Workload.closing``): to an
    account that still certainly holds money (``BALANCE_NOT_ZERO``), or to one that never
    took part in a transfer and holds nothing.
    """

    currency: dict[str, str] = field(default_factory=dict)
    balance: Counter[str] = field(default_factory=Counter)
    #: What an account certainly holds whatever credits have arrived: deposits minus
    #: withdrawals and outgoing transfers (refunds and credits are never counted).
    floor: Counter[str] = field(default_factory=Counter)
    deposited: Counter[str] = field(default_factory=Counter)
    expected: dict[str, Outcome] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    #: Accounts that sent a transfer or may have received one: a credit's arrival is
    #: timing-dependent, so their balance when a close is decided is not known.
    transferring: set[str] = field(default_factory=set)

    def apply(self, cmd: Command) -> Outcome:
        """Apply one command as the bank would; a copy of a known command id changes nothing."""
        command_id = cmd["command_id"]
        if command_id in self.expected:
            return self.expected[command_id]
        outcome = self._decide(cmd)
        self.expected[command_id] = outcome
        return outcome

    def _decide(self, cmd: Command) -> Outcome:
        kind, account = cmd["type"], cmd["account_id"]
        if kind == "TRANSFER_MONEY" and cmd["to_account_id"] == account:
            return Outcome("CommandRejected", "SAME_ACCOUNT")  # checked before anything
        if kind == "CREATE_ACCOUNT":
            if account in self.currency:
                return Outcome("CommandRejected", "ACCOUNT_ALREADY_EXISTS")
            self.currency[account] = cmd["currency"]
            self.balance[account] = 0
            return Outcome("AccountCreated")
        if account not in self.currency:
            return Outcome("CommandRejected", "ACCOUNT_NOT_FOUND")
        if account in self.closed:
            return Outcome("CommandRejected", "ACCOUNT_CLOSED")
        if kind == "CLOSE_ACCOUNT":
            if self.floor[account] > 0:
                return Outcome("CommandRejected", "BALANCE_NOT_ZERO")
            assert account not in self.transferring, f"timing-dependent: {cmd}"
            self.closed.add(account)
            return Outcome("AccountClosed")
        amount = cmd["amount"]
        if kind == "DEPOSIT":
            self.balance[account] += amount
            self.floor[account] += amount
            self.deposited[self.currency[account]] += amount
            return Outcome("MoneyDeposited")
        if amount > self.floor[account]:
            # Only certain refusals are sent: see the module docstring.
            assert amount > self.deposited[self.currency[account]], f"timing-dependent: {cmd}"
            return Outcome("CommandRejected", "INSUFFICIENT_FUNDS")
        self.balance[account] -= amount
        self.floor[account] -= amount
        if kind == "WITHDRAW":
            return Outcome("MoneyWithdrawn")
        assert kind == "TRANSFER_MONEY", cmd
        destination = cmd["to_account_id"]
        self.transferring |= {account, destination}
        if destination not in self.currency:
            self.balance[account] += amount
            return Outcome("TransferRefunded", "ACCOUNT_NOT_FOUND")
        if destination in self.closed:
            self.balance[account] += amount
            return Outcome("TransferRefunded", "ACCOUNT_CLOSED")
        if self.currency[destination] != self.currency[account]:
            self.balance[account] += amount
            return Outcome("TransferRefunded", "CURRENCY_MISMATCH")
        self.balance[destination] += amount
        return Outcome("TransferCredited")

    def totals(self) -> Counter[str]:
        """The sum of the balances per currency."""
        totals: Counter[str] = Counter()
        for account, currency in self.currency.items():
            totals[currency] += self.balance[account]
        return totals


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    """Commands for a set of accounts in two currencies, applied to a reference as made.

    ``opening()`` creates the accounts and funds them; ``stream(n)`` makes ``n`` mixed
    deposits, withdrawals and transfers (some refused, some refunded), with re-sends of
    earlier commands under the same command id mixed in at ``duplicate_share``.
    """

    prefix: str
    rng: random.Random
    accounts: int = 20
    currencies: tuple[str, ...] = ("EUR", "USD")
    duplicate_share: float = 0.1
    bank: ReferenceBank = field(default_factory=ReferenceBank)
    sent: list[Command] = field(default_factory=list)
    _ids: int = 0

    def __post_init__(self) -> None:
        self.account_ids = [f"{self.prefix}-a{n:02d}" for n in range(self.accounts)]
        self.missing = [f"{self.prefix}-missing{n}" for n in range(3)]
        self.currency_of = {
            account: self.currencies[n % len(self.currencies)]
            for n, account in enumerate(self.account_ids)
        }

    def next_id(self) -> str:
        self._ids += 1
        return f"{self.prefix}-c{self._ids:05d}"

    def _add(self, cmd: Command) -> Command:
        self.bank.apply(cmd)
        self.sent.append(cmd)
        return cmd

    def create(self, account: str) -> Command:
        return self._add(
            command(
                "CREATE_ACCOUNT",
                self.next_id(),
                account,
                owner=f"owner of {account}",
                currency=self.currency_of[account],
            )
        )

    def deposit(self, account: str, amount: int) -> Command:
        return self._add(command("DEPOSIT", self.next_id(), account, amount=amount))

    def withdraw(self, account: str, amount: int) -> Command:
        return self._add(command("WITHDRAW", self.next_id(), account, amount=amount))

    def transfer(self, source: str, destination: str, amount: int) -> Command:
        return self._add(
            command(
                "TRANSFER_MONEY",
                self.next_id(),
                source,
                to_account_id=destination,
                amount=amount,
            )
        )

    def close(self, account: str) -> Command:
        return self._add(command("CLOSE_ACCOUNT", self.next_id(), account))

    def closing(self, account: str, currency: str) -> Iterator[Command]:
        """An account's life up to its close and after, a command at a time, each made
        (and applied to the reference) only when asked for, so that the life can be
        interleaved with ``one()``: opened and funded; a close refused (money left);
        emptied and closed; then a deposit, a withdrawal, a transfer out and another close,
        all refused (``ACCOUNT_CLOSED``), and a transfer to it, refunded. The account is
        never a transfer's destination before its close, so every outcome is certain."""
        self.currency_of[account] = currency
        yield self.create(account)
        amount = self.rng.randint(100, 5_000)
        yield self.deposit(account, amount)
        yield self.close(account)  # BALANCE_NOT_ZERO
        yield self.withdraw(account, amount)
        yield self.close(account)  # AccountClosed
        yield self.deposit(account, self.rng.randint(1, 1_000))
        yield self.withdraw(account, TOO_MUCH)
        yield self.transfer(account, self.rng.choice(self.account_ids), 1)
        floor, currency_of = self.bank.floor, self.currency_of
        payers = [a for a in self.account_ids if floor[a] > 0 and currency_of[a] == currency]
        if payers:
            yield self.transfer(self.rng.choice(payers), account, 1)  # refunded: closed
        yield self.close(account)

    def mixed(self, count: int, closes: int = 3, share: float = 0.1) -> list[Command]:
        """``count`` commands of ``one()`` with the lives (``closing``) of ``closes`` more
        accounts woven in at random, about one command in ``1 / share``."""
        lives = [
            self.closing(f"{self.prefix}-z{n:02d}", self.currencies[n % len(self.currencies)])
            for n in range(closes)
        ]
        made: list[Command] = []
        ones = 0
        while ones < count or lives:
            if lives and (ones >= count or self.rng.random() < share):
                life = self.rng.choice(lives)
                cmd = next(life, None)
                if cmd is None:
                    lives.remove(life)
                else:
                    made.append(cmd)
            else:
                made.append(self.one())
                ones += 1
        return made

    def opening(self) -> tuple[list[Command], list[Command]]:
        """The account creations, then one deposit into every account."""
        creations = [self.create(account) for account in self.account_ids]
        deposits = [
            self.deposit(account, self.rng.randint(5_000, 20_000)) for account in self.account_ids
        ]
        return creations, deposits

    def stream(self, count: int) -> list[Command]:
        return [self.one() for _ in range(count)]

    def one(self) -> Command:
        rng, bank = self.rng, self.bank
        if self.sent and rng.random() < self.duplicate_share:
            copy = rng.choice(self.sent)
            self.sent.append(copy)  # the same command, same id: applied once
            return copy
        roll = rng.random()
        account = rng.choice(self.account_ids)
        if roll < 0.25:
            return self.deposit(account, rng.randint(1, 1_000))
        if roll < 0.30:
            return self.deposit(rng.choice(self.missing), rng.randint(1, 1_000))
        if roll < 0.38:
            return self.withdraw(account, TOO_MUCH)  # refused: INSUFFICIENT_FUNDS
        floor = bank.floor[account]
        if floor <= 0:
            return self.deposit(account, rng.randint(1, 1_000))
        amount = rng.randint(1, min(floor, 800))
        if roll < 0.48:
            return self.withdraw(account, amount)
        if roll < 0.52:
            return self.transfer(account, account, amount)  # refused: SAME_ACCOUNT
        if roll < 0.56:
            return self.transfer(account, account, TOO_MUCH)  # SAME_ACCOUNT first
        if roll < 0.62:
            return self.transfer(account, rng.choice(self.missing), amount)  # refunded
        currency = self.currency_of[account]
        if roll < 0.68:
            others = [a for a in self.account_ids if self.currency_of[a] != currency]
            return self.transfer(account, rng.choice(others), amount)  # refunded: currency
        if roll < 0.72:
            others = [a for a in self.account_ids if a != account]
            return self.transfer(account, rng.choice(others), TOO_MUCH)  # INSUFFICIENT_FUNDS
        same = [a for a in self.account_ids if a != account and self.currency_of[a] == currency]
        return self.transfer(account, rng.choice(same), amount)

    @property
    def expected(self) -> dict[str, Outcome]:
        return self.bank.expected


# --------------------------------------------------------------------------- sending


class Producer:
    """A plain aiokafka producer onto ``commands`` (keyed by account unless told)."""

    def __init__(self, broker: Broker) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks="all",
            max_request_size=2 << 20,
            request_timeout_ms=60_000,
        )

    async def __aenter__(self) -> Producer:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(
        self,
        value: Command | bytes | None,
        key: bytes | str | None = "auto",
        **options: Any,
    ) -> None:
        """Produce one record and wait for its acknowledgement; ``options`` go to
        aiokafka's ``send`` (``partition``, ``timestamp_ms``, ``headers``)."""
        await (await self.enqueue(value, key, **options))

    async def enqueue(
        self,
        value: Command | bytes | None,
        key: bytes | str | None = "auto",
        **options: Any,
    ) -> asyncio.Future[Any]:
        """Hand one record to the producer; the future resolves once it is acknowledged."""
        if key == "auto":
            assert isinstance(value, dict)
            key = str(value["account_id"]).encode()
        elif isinstance(key, str):
            key = key.encode()
        payload = orjson.dumps(value) if isinstance(value, dict) else value
        return await self.producer.send("commands", payload, key=key, **options)

    async def send_all(self, commands: Iterable[Command], burst: bool = False) -> None:
        """Send the commands in order, each acknowledged before the next; with ``burst``,
        all handed to the producer at once (they share requests, and so arrive close
        together, in the same takes), then every acknowledgement awaited."""
        if not burst:
            for cmd in commands:
                await self.send(cmd)
            return
        await self.flushed([await self.enqueue(cmd) for cmd in commands])

    async def flushed(self, pending: Iterable[asyncio.Future[Any]]) -> None:
        """Wait for the acknowledgements of enqueued records (raises the first error)."""
        await asyncio.gather(*pending)


class Feed:
    """Sends commands at a steady pace in a background task; ``sent`` counts them."""

    def __init__(self, producer: Producer, commands: list[Command], interval: float) -> None:
        self.producer, self.commands, self.interval = producer, commands, interval
        self.sent = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Feed:
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        for cmd in self.commands:
            await self.producer.send(cmd)
            self.sent += 1
            await asyncio.sleep(self.interval)

    async def reached(self, count: int, timeout: float = SETTLE_TIMEOUT) -> None:
        """Return once ``count`` commands are on the broker."""
        deadline = time.monotonic() + timeout
        while self.sent < count:
            assert self.task is not None
            if self.task.done():
                self.task.result()  # raises what the feed died of
                break
            assert time.monotonic() < deadline, f"only {self.sent} of {count} commands sent"
            await asyncio.sleep(0.02)

    async def finished(self, timeout: float = SETTLE_TIMEOUT) -> None:
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout)


# --------------------------------------------------------------------------- reading


class Stalled(AssertionError):
    """The system went quiet with commands unfinished (``commands``: their ids)."""

    def __init__(self, commands: list[str], message: str) -> None:
        super().__init__(message)
        self.commands = commands


class EventLog:
    """Reads ``events`` from the beginning, incrementally, folding it into a ``Ledger``.

    ``outcomes`` maps each command id to its distinct terminal events (a redelivered copy
    with the same event id is the same outcome: readers dedupe by event id).
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20,
        )
        self.ledger = Ledger()
        self.records: list[Event] = []
        self.outcomes: dict[str, dict[str, Event]] = defaultdict(dict)
        self.unreadable: list[str] = []
        self._assigned = False

    async def __aenter__(self) -> EventLog:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def _assign(self) -> bool:
        partitions = self.consumer.partitions_for_topic("events")
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic("events")
        if not partitions:
            return False
        tps = [TopicPartition("events", p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._assigned = True
        return True

    async def poll(self) -> int:
        """Fold whatever has arrived; returns the number of records read."""
        if not self._assigned and not await self._assign():
            await asyncio.sleep(0.2)
            return 0
        batch = await self.consumer.getmany(timeout_ms=300, max_records=5000)
        count = 0
        for tp, messages in batch.items():
            for message in messages:
                count += 1
                self._fold(tp.partition, message.offset, message.value)
        return count

    def _fold(self, partition: int, offset: int, value: bytes) -> None:
        try:
            data = orjson.loads(value)
            event = event_from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            self.unreadable.append(f"events[{partition}]@{offset}: {exc}: {value[:200]!r}")
            return
        data["_partition"], data["_offset"] = partition, offset
        self.records.append(data)
        self.ledger.apply(event)
        if data["type"] in TERMINAL_TYPES:
            self.outcomes[data["command_id"]][data["event_id"]] = data

    async def wait_until(
        self, condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout:.0f} s: not {what}")
            await self.poll()

    def missing_outcomes(self, command_ids: Iterable[str]) -> list[str]:
        return [command_id for command_id in command_ids if command_id not in self.outcomes]

    def settled(self) -> bool:
        """No money in flight, and every debited transfer settled or refunded."""
        no_flight = not any(self.ledger.money_in_flight().values())
        return no_flight and all(
            account.in_flight == 0 and account.in_flight_count == 0
            for account in self.ledger.accounts.values()
        )

    def unsettled(self, expected: Iterable[str]) -> list[str]:
        """Commands not finished yet: no outcome, or a transfer not settled or refunded."""
        pending = set(self.missing_outcomes(expected))
        debited, finished = set(), set()
        for record in self.records:
            if record["type"] == "TransferDebited":
                debited.add(record["transfer_id"])
            elif record["type"] in ("TransferSettled", "TransferRefunded"):
                finished.add(record["transfer_id"])
        return sorted(pending | (debited - finished))

    async def quiesce(
        self,
        expected: dict[str, Outcome],
        timeout: float = SETTLE_TIMEOUT,
        stall: float = STALL_TIMEOUT,
    ) -> None:
        """Wait until every expected command has an outcome and nothing is in flight.

        Raises ``Stalled`` after ``timeout`` seconds, or sooner when nothing new has
        arrived on ``events`` for ``stall`` seconds while commands are unfinished.
        """
        started = last_progress = time.monotonic()
        while True:
            missing = self.missing_outcomes(expected)
            if not missing and self.settled():
                return
            now = time.monotonic()
            if now - started > timeout or now - last_progress > stall:
                flight = {
                    a.account_id: (a.in_flight, a.in_flight_count)
                    for a in self.ledger.accounts.values()
                    if a.in_flight or a.in_flight_count
                }
                raise Stalled(
                    self.unsettled(expected),
                    f"not quiet after {now - started:.0f} s ({now - last_progress:.0f} s "
                    f"without a new event): {len(missing)} of {len(expected)} commands "
                    f"without an outcome (first: {missing[:10]}); "
                    f"in flight {dict(self.ledger.money_in_flight())} {flight}",
                )
            if await self.poll():
                last_progress = time.monotonic()

    def outcome_problems(self, expected: dict[str, Outcome]) -> list[str]:
        """Commands whose outcomes are not exactly the one the reference expects."""
        problems = []
        for command_id, want in sorted(expected.items()):
            got = list(self.outcomes.get(command_id, {}).values())
            if len(got) != 1:
                shapes = [(e["type"], e.get("reason"), e["event_id"]) for e in got]
                problems.append(f"{command_id}: {len(got)} outcomes {shapes}, expected {want}")
                continue
            actual = Outcome(got[0]["type"], got[0].get("reason"))
            if actual != want:
                problems.append(f"{command_id}: {actual}, expected {want}")
        return problems

    def balance_problems(self, bank: ReferenceBank, exclusive: bool = True) -> list[str]:
        """Where the fold of the event log disagrees with the reference, or the books.

        ``exclusive``: the reference knows every account of the log (its own broker); on
        a broker that other tests share, pass False.
        """
        problems = list(self.unreadable) + self.ledger.check()
        for account, balance in sorted(bank.balance.items()):
            folded = self.ledger.accounts.get(account)
            if folded is None:
                problems.append(f"{account}: no such account in the event log")
            elif (folded.balance, folded.currency) != (balance, bank.currency[account]):
                problems.append(
                    f"{account}: event log says {folded.balance} {folded.currency}, "
                    f"reference {balance} {bank.currency[account]}"
                )
        extra = set(self.ledger.accounts) - set(bank.currency) if exclusive else set()
        problems += [f"{account}: in the event log, not in the reference" for account in extra]
        if any(self.ledger.money_in_flight().values()):
            problems.append(f"money in flight: {dict(self.ledger.money_in_flight())}")
        return problems

    def problems(self, work: Workload, exclusive: bool = True) -> list[str]:
        """Everything wrong after a fault: outcomes other than the reference's, balances
        other than the reference's or books that do not balance, events applied twice."""
        problems = self.outcome_problems(work.expected)
        problems += self.balance_problems(work.bank, exclusive)
        return problems + [f"applied twice: {p}" for p in self.applied_twice()]

    def applied_twice(self) -> list[str]:
        """Seq-bearing events of one account with the same seq but different ids."""
        by_seq: dict[tuple[str, int], set[str]] = defaultdict(set)
        for record in self.records:
            if "seq" in record:
                by_seq[(record["account_id"], record["seq"])].add(record["event_id"])
        return [f"{key}: {ids}" for key, ids in by_seq.items() if len(ids) > 1]


# ------------------------------------------------------------------------ http, cli


async def get_json(url: str, timeout: float = 30) -> tuple[int | None, Any]:
    """GET ``url``: (status, decoded JSON body); (None, error) when nothing answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url) as response,
        ):
            text = await response.text()
            with contextlib.suppress(ValueError):
                return response.status, orjson.loads(text)
            return response.status, text
    except (aiohttp.ClientError, TimeoutError) as exc:
        return None, repr(exc)


async def wait_for_log(worker: Worker, text: str, count: int = 1, timeout: float = 90) -> None:
    """Return once ``worker`` has logged ``text`` ``count`` times; fail if it stops first."""
    deadline = time.monotonic() + timeout
    while worker.log_path.read_text(errors="replace").count(text) < count:
        assert worker.process is not None and worker.process.poll() is None, logs(worker)
        assert time.monotonic() < deadline, f"{text!r} not logged {count}x\n{logs(worker)}"
        await asyncio.sleep(0.2)


async def account_problems(
    worker: Worker, bank: ReferenceBank, timeout: float = VERIFY_TIMEOUT
) -> dict[str, str]:
    """Poll ``GET /accounts/{id}`` on ``worker`` until every account shows the reference
    balance with nothing in flight (the read model may lag); what still differs at the
    deadline, by account."""
    deadline = time.monotonic() + timeout
    pending = dict(bank.balance)
    last: dict[str, Any] = {}
    while pending:
        for account, balance in list(pending.items()):
            status, body = await get_json(f"{worker.url}/accounts/{account}")
            last[account] = (status, body)
            if (
                status == 200
                and isinstance(body, dict)
                and (body.get("balance"), body.get("in_flight")) == (balance, 0)
            ):
                del pending[account]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return {
        account: f"GET /accounts/{account}: {last[account]}, expected balance {balance}"
        for account, balance in sorted(pending.items())
    }


#: The topics the worker's agents read.
AGENT_INPUTS = ("commands", "events", "command-outcome-events")


async def all_committed(broker: Broker, timeout: float = 120) -> None:
    """Wait until the workers' group has committed every partition of the topics its
    agents read up to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id="banking-app", enable_auto_commit=False
    )
    await consumer.start()
    try:
        # A consumer that subscribes to nothing knows no topic until it asks (Kafka).
        await consumer._client.force_metadata_update()
        tps = [
            TopicPartition(topic, partition)
            for topic in AGENT_INPUTS
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        assert tps, "no input partitions"
        deadline = time.monotonic() + timeout
        while True:
            ends = await consumer.end_offsets(tps)
            behind = {tp: ends[tp] for tp in tps if (await consumer.committed(tp) or 0) < ends[tp]}
            if not behind:
                return
            assert time.monotonic() < deadline, f"not committed up to the end: {behind}"
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def committed_inputs(broker: Broker, command_ids: set[str]) -> dict[str, set[str]]:
    """For each of ``command_ids``, the types of its records on ``commands`` that lie below
    the offset the workers' group has committed on their partition: records the group
    counts as processed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id="banking-app",  # only asked for its committed offsets: it never joins
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic("commands")
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic("commands") or set()
        tps = [TopicPartition("commands", p) for p in sorted(partitions)]
        committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[str, set[str]] = defaultdict(set)
        remaining = {tp for tp in tps if committed[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= committed[tp]:
                        remaining.discard(tp)
                        break
                    with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                        for value in inputs_of(orjson.loads(record.value)):
                            if value.get("command_id") in command_ids:
                                found[value["command_id"]].add(str(value.get("type")))
            for tp in list(remaining):
                if await consumer.position(tp) >= committed[tp]:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()


def inputs_of(value: Any) -> list[dict[str, Any]]:
    """The commands a record of ``commands`` holds: itself, or a bundle's legs."""
    if isinstance(value, list):
        return [item["command"] for item in value if isinstance(item, dict) and "command" in item]
    return [value] if isinstance(value, dict) else []


def awaited_inputs(log: EventLog, command_id: str) -> set[str]:
    """The input types whose effect an unfinished command lacks in the event log: the
    command itself, or the saga leg its transfer waits for."""
    types = {e["type"] for e in log.records if e["command_id"] == command_id}
    if "TransferDebited" not in types:
        return {"CREATE_ACCOUNT", "DEPOSIT", "WITHDRAW", "TRANSFER_MONEY", "CLOSE_ACCOUNT"}
    if "TransferCredited" in types:
        return {"TRANSFER_SETTLE"}
    return {"TRANSFER_CREDIT", "TRANSFER_REFUND"}


async def settle(
    log: EventLog, expected: dict[str, Outcome], broker: Broker, *workers: Worker
) -> None:
    """``log.quiesce``; when it stalls, the failure also names the unfinished commands
    whose awaited input lies below the committed offset of its partition (the group
    counts it as processed, yet it had no effect): a record the consumer skipped. It
    ends with what the ``workers`` logged above INFO, and their lines that name those
    commands."""
    try:
        await log.quiesce(expected)
    except Stalled as stalled:
        pending = set(stalled.commands)
        committed = await committed_inputs(broker, pending)
        skipped = sorted(c for c in pending if awaited_inputs(log, c) & committed.get(c, set()))
        detail = f"{stalled}; committed without effect: {skipped}"
        raise Stalled(stalled.commands, detail + notable_lines(pending, *workers)) from None


def notable_lines(command_ids: set[str], *workers: Worker, lines: int = 60) -> str:
    """The workers' log lines above INFO, and those naming any of ``command_ids``: the
    last ``lines`` of each worker's log that are either."""
    out = []
    for worker in workers:
        try:
            text = worker.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            out.append(f"--- {worker.log_path}: {exc}")
            continue
        chosen = [
            line
            for line in text
            if "[WARNING]" in line
            or "[ERROR]" in line
            or "[CRITICAL]" in line
            or any(command_id in line for command_id in command_ids)
        ]
        out.append(f"--- {worker.log_path} (notable lines)\n" + "\n".join(chosen[-lines:]))
    return "\n" + "\n".join(out) if out else ""


async def settled_as_expected(
    log: EventLog, work: Workload, broker: Broker, *workers: Worker
) -> None:
    """``settle``, then every command has the reference's one outcome, every balance the
    reference's, the books balance and nothing was applied twice (``log.problems``)."""
    await settle(log, work.expected, broker, *workers)
    problems = log.problems(work)
    assert not problems, "\n".join(problems[:50]) + logs(*workers)


async def check_views(worker: Worker, bank: ReferenceBank) -> None:
    """``GET /accounts/{id}`` on ``worker`` shows every reference balance, nothing in flight."""
    problems = await account_problems(worker, bank)
    assert not problems, "\n".join(problems.values()) + logs(worker)


async def verify(broker: Broker, workdir: Path, *workers: Worker) -> None:
    """``replay --verify`` passes (retried while the read model catches up)."""
    run = await replay_verify(broker, workdir)
    assert run.returncode == 0, describe(run, *workers)


def banking_app(broker: Broker, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m banking_app ARGS`` against ``broker`` (its data dir in workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KAFKA_BROKER": broker.url,
        "BANKING_DATA_DIR": str(workdir / "cli-data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "banking_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def replay_verify(
    broker: Broker, workdir: Path, timeout: float = VERIFY_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``replay --verify`` until it exits 0 (the read model may lag) or time runs out;
    returns the last run."""
    deadline = time.monotonic() + timeout
    while True:
        run = await asyncio.to_thread(banking_app, broker, workdir, "replay", "--verify")
        if run.returncode == 0 or time.monotonic() > deadline:
            return run
        await asyncio.sleep(2)


def describe(run: subprocess.CompletedProcess[str], *workers: Worker) -> str:
    """A failed run's output, with the tails of the workers' logs."""
    parts = [f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"]
    parts += [f"--- {w.log_path}\n{w.log_tail(80)}" for w in workers]
    return "\n".join(parts)


def logs(*workers: Worker, lines: int = 80) -> str:
    return "\n".join(f"--- {w.log_path}\n{w.log_tail(lines)}" for w in workers)
