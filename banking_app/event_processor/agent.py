"""The command agent: decide each command against its account and emit the events.

Order of writes per take (docs/at-least-once.md): events and legs first, acked by the
broker; then the account rows; then the command-id index and the claims. Whatever
prefix of that survives a crash is safe to reprocess.

A public command is decided only once its command id is claimed bank-wide
(docs/command-ids.md): it waits in its account's queue of pending inputs
(``pending``) while a ``CLAIM_COMMAND_ID`` leg goes to the partition of its id, whose
``command-claims`` table answers with a ``COMMAND_ID_ANSWER`` leg; when the id's
partition is the account's own, the claim is answered in the same take. Inputs leave
the queue in partition order, as soon as the inputs before them have.

Failures (docs/at-least-once.md, "When handling fails"): an input that cannot be
decided is tried once more and then set aside, dead-lettered as ``PROCESSING_FAILED``
with the error, and the rest of its take goes on; a take whose publishing or table
flush fails is handled again from the start (``banking_app.runtime.retries``), and a
take that never succeeds stops the worker without being acknowledged.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any, NamedTuple

import faust
from faust.types import EventT

from banking_app.domain import Account, MalformedCommand, MalformedLeg, parse_command
from banking_app.domain.command_ids import Claim, answer, fingerprint_of, reused_rejection
from banking_app.domain.commands import (
    ACCOUNT_ID_RE,
    COMMAND_TYPES,
    MAX_REFUSAL_LENGTH,
    MAX_REFUSED_JSON,
    MAX_TYPE_LENGTH,
    Answer,
    ClaimCommandId,
    Command,
    CommandIdAnswer,
)
from banking_app.domain.decide import Decision, rejection
from banking_app.event_processor import leg_seal, pending
from banking_app.event_processor.idempotency import (
    AccountRow,
    Position,
    admit,
    as_position,
    decide_pending,
    process,
    stored_position,
)
from banking_app.event_processor.tables import (
    accounts_table,
    command_claims_table,
    command_offsets_table,
)
from banking_app.runtime import codec, metrics
from banking_app.runtime.faults import faults
from banking_app.runtime.faust_app import app
from banking_app.runtime.outbox import Bundles, KafkaOutbox, Outbox, Record
from banking_app.runtime.retries import (
    drop_staged,
    stopping_or_rebalancing,
    tried_twice,
    until_handled,
)
from banking_app.runtime.settings import settings
from banking_app.runtime.streams import let_go, takes
from banking_app.runtime.tables import read_json, stage_json
from banking_app.runtime.topics import (
    commands_topic,
    dead_letters_topic,
    events_topic,
    hash_partition,
    partition_for,
)
from banking_app.runtime.turns import taking_turns

log = logging.getLogger(__name__)


def _printable(data: bytes | None) -> str | None:
    """Bytes as text where they are UTF-8, else as base64 prefixed ``base64:``."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


class Handled(StrEnum):
    """What became of one record of the commands topic."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REROUTED = "rerouted"
    DEAD_LETTERED = "dead-lettered"
    #: deciding it failed twice: dead-lettered as PROCESSING_FAILED, with the error
    SET_ASIDE = "set-aside"
    #: taken into its account's queue, to be decided once its claim, and the inputs
    #: before it, are answered (what became of it then is in a later take's ``decided``)
    QUEUED = "queued"
    #: refused: its command id was first used for another command (COMMAND_ID_REUSED)
    REUSED = "reused"
    #: a claim leg, answered from the ``command-claims`` table
    CLAIM = "claim"
    #: a claim's answer, recorded in its account's queue
    ANSWER = "answer"


#: Where an input sat: (partition, offset, index).
Place = tuple[int, int, int]


class Outcomes(list[Handled]):
    """What became of each input of a take, in order; and, in ``decided``, of each
    input released from its account's queue in this take (an earlier take's ``QUEUED``
    input among them), by the place it sat at."""

    def __init__(self, handled: list[Handled], decided: dict[Place, Handled]) -> None:
        super().__init__(handled)
        self.decided = decided


class Input(NamedTuple):
    """One input of the commands topic: a whole record, or one saga leg of a bundle.

    The command agent sends a take's saga legs as one record per partition holding a
    JSON array of ``{"timestamp": ms, "command": leg}`` (docs/at-least-once.md), so a
    transfer costs one consumed record, not three. Each leg keeps the timestamp of the
    input that sent it and has its own position: the record's offset and its index.
    (A NamedTuple: one is made per input, and a frozen dataclass costs twice as much.)
    """

    message: faust.types.Message
    index: int = 0
    #: A bundled leg's envelope as decoded; ``None`` for a whole record.
    item: Any = None
    bundled: bool = False

    @property
    def position(self) -> Position:
        return (self.message.offset, self.index)

    @property
    def partition(self) -> int:
        return self.message.partition  # type: ignore[no-any-return]

    @property
    def timestamp(self) -> float:
        if self.bundled and _is_envelope(self.item):
            return self.item["timestamp"] / 1000  # type: ignore[no-any-return]
        return self.message.timestamp  # type: ignore[no-any-return]

    @property
    def value(self) -> bytes | None:
        """The input as bytes: the record's value, or the leg alone (to re-send or to
        dead-letter it)."""
        if not self.bundled:
            return self.message.value  # type: ignore[no-any-return]
        return codec.dumps(self.item["command"] if _is_envelope(self.item) else self.item)

    def has_key_of(self, account_id: str) -> bool:
        """A whole record must be keyed by its account; a leg is keyed by its own."""
        return self.bundled or self.message.key == codec.key(account_id)


#: The range of a bundled leg's timestamp: any a command record can carry (Kafka takes
#: -1, "none", as a record's timestamp, and a leg or claim keeps its input's), up to
#: the last instant an event's ``occurred_at`` can show (9999-12-31). With 0 as the
#: least, the credit leg of a transfer stamped -1 was dead-lettered and its money stayed
#: in flight, and a command stamped -1 sent claim legs that were dead-lettered, and its
#: account's queue waited for their answers for ever.
MIN_MILLIS = -1
MAX_MILLIS = int(codec.MAX_TIMESTAMP * 1000)


def _is_millis(value: Any) -> bool:
    return type(value) is int and MIN_MILLIS <= value <= MAX_MILLIS


def _safe_iso(seconds: float) -> str | None:
    """``occurred_at`` of a timestamp, or None for one no ISO date can show."""
    return codec.iso_timestamp(seconds) if codec.valid_timestamp(seconds) else None


def _is_leg(data: Any) -> bool:
    """True for an input that claims to be a saga leg (valid or not)."""
    return isinstance(data, dict) and data.get("type") in LEG_TYPES


def _is_envelope(item: Any) -> bool:
    return isinstance(item, dict) and _is_millis(item.get("timestamp")) and "command" in item


def unbundle(message: faust.types.Message, items: list[Any]) -> list[tuple[Input, Any]]:
    """The legs of a bundle record, each with the command data it carries."""
    found = []
    for index, item in enumerate(items):
        source = Input(message, index, item, bundled=True)
        found.append((source, item["command"] if _is_envelope(item) else None))
    return found


def command_partitions() -> int:
    """How many partitions ``commands`` has: as the consumer sees it, else as configured."""
    return app.consumer.topic_partitions(commands_topic.get_topic_name()) or settings.partitions


async def leg_bundles(legs: list[tuple[Command, float]], partitions: int) -> list[Record]:
    """A take's legs, sealed, as one record per partition of ``commands``: each goes to
    the partition of its ``route_key`` (a saga leg's account, a claim's command id)."""
    bundles = Bundles(commands_topic)
    key = settings.leg_key_bytes()
    async for leg, timestamp in taking_turns(legs):
        envelope = {"timestamp": round(timestamp * 1000), "command": leg_seal.sealed(leg, key)}
        bundles.add(partition_for(codec.key(leg.route_key), partitions), codec.dumps(envelope))
    return bundles.close()


def claim_partition(command_id: str) -> int:
    """The partition a command id is claimed on (its ``command-claims`` row's)."""
    return hash_partition(codec.key(command_id), command_partitions())


@dataclass
class Batch:
    """One take of the commands topic: what to publish first, and what to store after."""

    records: list[Record] = field(default_factory=list)
    #: saga legs to send, each with the timestamp of the input that sent it
    legs: list[tuple[Command, float]] = field(default_factory=list)
    #: claim legs to send (claims and answers), bundled apart from the saga legs
    claim_legs: list[tuple[Command, float]] = field(default_factory=list)
    #: account id → (its final row in this batch, its partition)
    rows: dict[str, tuple[AccountRow, int]] = field(default_factory=dict)
    #: input id → (position it was applied at, its partition)
    offsets: dict[str, tuple[Position, int]] = field(default_factory=dict)
    #: command id → (its first claim, newly made in this batch; its partition)
    claims: dict[str, tuple[Claim, int]] = field(default_factory=dict)
    applied: list[tuple[Command, Decision]] = field(default_factory=list)
    handled: list[Handled] = field(default_factory=list)
    decided: dict[Place, Handled] = field(default_factory=dict)

    def add(self, released: Released, account_id: str, partition: int) -> None:
        """Take in what releasing an account's inputs made."""
        self.records += released.records
        self.legs += released.legs
        self.rows[account_id] = (released.row, partition)
        self.applied += released.applied
        self.decided.update(released.decided)


@dataclass
class Released:
    """What the inputs released from one account's queue made: computed whole before
    the batch takes it in (see ``CommandProcessor.isolated``)."""

    row: AccountRow
    records: list[Record] = field(default_factory=list)
    legs: list[tuple[Command, float]] = field(default_factory=list)
    applied: list[tuple[Command, Decision]] = field(default_factory=list)
    decided: dict[Place, Handled] = field(default_factory=dict)


class CommandProcessor:
    """Turns takes of the commands topic into events, legs and table writes.

    A take is decided in memory, account by account in offset order; then all its
    records are published and acknowledged together; then each touched account's row
    is written once. Batching changes no outcome: it only amortises the broker round
    trips (docs/at-least-once.md).
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def handle_take(self, events: Sequence[EventT]) -> Outcomes:
        """``handle_batch``, retried when it fails, until the worker gives up."""
        return await until_handled(
            lambda: self.handle_batch(events),
            agent="process_commands",
            records=len(events),
            discard=drop_staged(TABLES),
            stop_worker=app.crash,
            stopping=stopping_or_rebalancing,
            abandon=partial(let_go, events),
        )

    async def handle_batch(self, events: Sequence[EventT]) -> Outcomes:
        """What became of each input of the take (a bundle record holds several)."""
        batch = Batch()
        async for event in taking_turns(events):
            try:
                batch.handled += await self.decide_record(batch, event.message)
            except Exception as exc:  # outside ``isolated``: dead-lettering it failed
                batch.handled.append(self.set_aside(batch, Input(event.message), exc))
        partitions = command_partitions()
        batch.records += await leg_bundles(batch.legs, partitions)
        batch.records += await leg_bundles(batch.claim_legs, partitions)
        await self.outbox.publish(batch.records, fault="publish")
        async for account_id, (row, partition) in taking_turns(batch.rows.items()):
            stage_json(accounts_table, account_id, row.to_dict(), partition)
        async for dedupe_id, (position, partition) in taking_turns(batch.offsets.items()):
            stage_json(command_offsets_table, dedupe_id, stored_position(position), partition)
        async for command_id, (claim, partition) in taking_turns(batch.claims.items()):
            stage_json(command_claims_table, command_id, claim.to_dict(), partition)
        # Wait for the changelog too: the next take then never shares a produce batch
        # with this one (see "Known broker quirks" in the README).
        await self.outbox.flush(TABLES, fault="flush")
        metrics.count_commands(
            (command.type, decision.events) for command, decision in batch.applied
        )
        return Outcomes(batch.handled, batch.decided)

    async def decide_record(self, batch: Batch, message: faust.types.Message) -> list[Handled]:
        try:
            data = self.decode(message)
        except ValueError as exc:  # not JSON at all (orjson.JSONDecodeError)
            batch.records += self.dead_letter(Input(message), exc)
            return [Handled.DEAD_LETTERED]
        except Exception as exc:
            return [self.set_aside(batch, Input(message), exc)]
        if isinstance(data, list) and not message.key:
            # A bundle of saga legs (sent without a key); an array under a key is a
            # client's mistake, dead-lettered whole below like any value not a command.
            # A bundle can hold thousands of legs: the web views get their turns within
            # it too, or a GET waits seconds for the whole bundle (runtime.turns).
            return [
                self.isolated(batch, leg, item)
                async for leg, item in taking_turns(unbundle(message, data))
            ]
        return [self.isolated(batch, Input(message), data)]

    def decode(self, message: faust.types.Message) -> Any:
        """The record's JSON (``ValueError`` when it is not JSON); tried twice."""

        def loads() -> Any:
            faults.check("decode")
            return codec.loads(message.value) if message.value is not None else None

        return tried_twice(loads, f"decoding {message.offset}", (ValueError,))

    def isolated(self, batch: Batch, source: Input, data: Any) -> Handled:
        """``decide_one``, tried twice; an input that fails both times is set aside.

        Deciding is pure, so an input that fails twice would fail every time: retrying
        the whole take for it would only hold up the inputs behind it. ``decide_one``
        changes ``batch`` only once everything it adds is computed, so a failed try
        leaves nothing behind.
        """
        try:
            return tried_twice(
                partial(self.decide_one, batch, source, data), f"deciding input {source.position}"
            )
        except Exception as exc:
            return self.set_aside(batch, source, exc)

    def set_aside(self, batch: Batch, source: Input, exc: Exception) -> Handled:
        """Dead-letter an input that cannot be handled, with the error, and go on.

        No event, and the input's id is not recorded: the bank did not decide it, and a
        copy sent after a fix is applied then. Its dead letter is its outcome.
        """
        log.error(
            "setting aside input %s of %s[%s]: %r",
            source.position,
            source.message.topic,
            source.partition,
            exc,
            exc_info=exc,
        )
        metrics.processing_failures_total.labels("process_commands").inc()
        try:
            letter = self.dead_letter(source, exc, reason="PROCESSING_FAILED")
        except Exception:  # the record itself is beyond reading: its place will do
            entry = {"reason": "PROCESSING_FAILED", "detail": repr(exc), **_place(source)}
            letter = [Record(dead_letters_topic, b"", codec.dumps(entry))]
        batch.records += letter
        return Handled.SET_ASIDE

    def decide_one(self, batch: Batch, source: Input, data: Any) -> Handled:
        try:
            command = parse_command(data)
            if source.bundled and command.public:
                raise MalformedCommand("a bundle holds saga legs only", command.command_id)
            if not command.public:
                leg_seal.check(command, data, settings.leg_key_bytes())
            if not codec.valid_timestamp(source.timestamp):
                raise MalformedCommand(
                    "the record's timestamp is not a date from year 1 to 9999",
                    command.command_id,
                )
        except MalformedCommand as exc:
            return self.malformed(batch, source, exc, data)
        if not self.on_own_partition(source, command.route_key):
            batch.records.append(self.reroute(source, command.command_id, command.route_key))
            return Handled.REROUTED
        if isinstance(command, ClaimCommandId):
            return self.claim(batch, source, command)
        if isinstance(command, CommandIdAnswer):
            return self.answer(batch, source, command)
        return self.apply(batch, source, command)

    def malformed(self, batch: Batch, source: Input, exc: MalformedCommand, data: Any) -> Handled:
        """Dead-letter it, as it came; and when it names a command id and an account,
        claim the id, to refuse it under the id once.

        The claim (``banking_app.domain.command_ids``) decides whether the id was used
        before, anywhere in the bank: its first use is refused ``MALFORMED_COMMAND``
        under the id's event id; a copy of it gets nothing more; a use of an id another
        command had (valid or not) is refused ``COMMAND_ID_REUSED`` under an event id of
        its own. So no two outcomes share an event id, and a corrected retry under the
        same id is refused as a reuse. The refusal is made where the id is claimed: a
        malformed command moves no money, so it need not wait its turn on its account.
        """
        batch.records += self.dead_letter(source, exc)
        claim = None if _is_leg(data) or source.bundled else malformed_claim(source, exc, data)
        if claim is None:
            # No id to claim, no account to refuse it to, or no date to show; or a leg or
            # bundle, the bank's own messages: one failing its checks was not sent by a
            # worker, and the transfer it names has its outcome from its real legs.
            return Handled.DEAD_LETTERED
        if claim_partition(claim.command_id) == source.partition:
            self.claim(batch, source, claim)
        else:
            batch.claim_legs.append((claim, source.timestamp))
        return Handled.DEAD_LETTERED

    def seen_at(self, batch: Batch, source: Input, dedupe_id: str) -> Position | None:
        """The position at which an input id was applied, if it was."""
        if dedupe_id in batch.offsets:
            return batch.offsets[dedupe_id][0]
        stored = read_json(command_offsets_table, dedupe_id, source.partition)
        return as_position(stored) if stored is not None else None

    def on_own_partition(self, source: Input, key: str) -> bool:
        """True when the input sits where its state lives: the partition of ``key``
        (its account's id, or for a claim its command id).

        A producer that keyed the record otherwise (no key, another partitioner) would
        otherwise split one account's inputs over two partitions, and their order.
        """
        own = partition_for(codec.key(key), command_partitions())
        return source.has_key_of(key) and source.partition == own

    def reroute(self, source: Input, command_id: str, key: str) -> Record:
        log.info(
            "re-keying command %s from partition %s to key %s",
            command_id,
            source.partition,
            key,
        )
        return Record(commands_topic, codec.key(key), source.value, source.timestamp)

    def row(self, batch: Batch, account_id: str, partition: int) -> AccountRow | None:
        """The account's row as the take has it: its own write first, else the table's."""
        if account_id in batch.rows:
            return batch.rows[account_id][0]
        stored = read_json(accounts_table, account_id, partition)
        return AccountRow.from_dict(stored) if stored is not None else None

    def apply(self, batch: Batch, source: Input, command: Command) -> Handled:
        """Take a public command or saga leg into its account, at most once.

        A saga leg with nothing pending before it is decided at once, as it always was.
        Anything else joins the account's queue; a public command's id is claimed (in
        this take when its partition is this one), and whatever the queue can release
        is decided.
        """
        partition = source.partition
        row = self.row(batch, command.account_id, partition)
        seen = self.seen_at(batch, source, command.dedupe_id)
        faults.check("decide", command.command_id)
        if not command.public and (row is None or not row.pending):
            return self.apply_leg(batch, source, command, row, seen)
        admission = admit(row, command, source.position, source.timestamp, seen)
        if admission.duplicate:
            return self.copy(batch, source, command, admission.record_offset, "taken in")
        row = admission.row
        made: tuple[Claim, int] | None = None
        claims: list[tuple[Command, float]] = []
        if command.public:
            entry = row.pending[-1]
            claimant = Claim(entry.fingerprint, command.account_id, source.position)
            if claim_partition(command.command_id) == partition:
                stored, said, new = self.claimed(batch, command.command_id, claimant, partition)
                made = (stored, partition) if new else None
                queue = pending.record_answer(
                    row.pending, command.command_id, source.position, entry.fingerprint, said
                )
                row = replace(row, pending=queue)
            else:
                offset, index = source.position
                leg = ClaimCommandId(
                    command_id=command.command_id,
                    account_id=command.account_id,
                    fingerprint=entry.fingerprint,
                    offset=offset,
                    index=index,
                )
                claims.append((leg, source.timestamp))
        released = self.release(row, partition)
        # Everything is computed before ``batch`` changes (see ``isolated``).
        batch.add(released, command.account_id, partition)
        batch.claim_legs += claims
        if made is not None:
            batch.claims[command.command_id] = made
        if not command.public:
            batch.offsets[command.dedupe_id] = (source.position, partition)
        return released.decided.get((partition, *source.position), Handled.QUEUED)

    def copy(
        self, batch: Batch, source: Input, command: Command, record_offset: bool, already: str
    ) -> Handled:
        """A copy of an input already ``already``: nothing changes, except that its
        position is recorded when the index asks for it (``record_offset``)."""
        if record_offset:
            batch.offsets[command.dedupe_id] = (source.position, source.partition)
        log.info("command %s already %s; ignoring the copy", command.dedupe_id, already)
        metrics.duplicates_total.labels(command.type).inc()
        return Handled.DUPLICATE

    def claimed(
        self, batch: Batch, command_id: str, claimant: Claim, partition: int
    ) -> tuple[Claim, Answer, bool]:
        """The id's claim row after ``claimant``, the answer, and whether the row is new."""
        if command_id in batch.claims:
            stored: Claim | None = batch.claims[command_id][0]
        else:
            data = read_json(command_claims_table, command_id, partition)
            stored = Claim.from_dict(data) if data is not None else None
        claim, said = answer(stored, claimant)
        return claim, said, stored is None

    def claim(self, batch: Batch, source: Input, leg: ClaimCommandId) -> Handled:
        """Answer a claim from the ``command-claims`` table, and send the answer back.

        The row is written once, by the first claim, so a claim delivered again gets the
        answer it got before.
        """
        position = (leg.offset, leg.index)
        claimant = Claim(leg.fingerprint, leg.account_id, position)
        stored, said, new = self.claimed(batch, leg.command_id, claimant, source.partition)
        reply = CommandIdAnswer(
            command_id=leg.command_id,
            account_id=leg.account_id,
            fingerprint=leg.fingerprint,
            offset=leg.offset,
            index=leg.index,
            answer=said.value,
        )
        if new:
            batch.claims[leg.command_id] = (stored, source.partition)
        if leg.refusal is not None:
            batch.records += refusal(leg, said, source.timestamp)
        else:
            batch.claim_legs.append((reply, source.timestamp))
        if said is not Answer.CLAIMED:
            log.info("command id %s claimed again: %s", leg.command_id, said.value)
        return Handled.CLAIM

    def answer(self, batch: Batch, source: Input, leg: CommandIdAnswer) -> Handled:
        """Record a claim's answer in the account's queue, and decide what it releases.

        An answer no input waits for (a copy, or one sent before a restart for an input
        that was taken in again and claimed again) changes nothing.
        """
        partition = source.partition
        row = self.row(batch, leg.account_id, partition)
        queue = row.pending if row is not None else ()
        answered = pending.record_answer(
            queue, leg.command_id, (leg.offset, leg.index), leg.fingerprint, Answer(leg.answer)
        )
        if row is None or answered is queue:
            log.info("answer for command %s awaited by no input; ignoring it", leg.command_id)
            return Handled.DUPLICATE
        released = self.release(replace(row, pending=answered), partition)
        batch.add(released, leg.account_id, partition)
        return Handled.ANSWER

    def release(self, row: AccountRow, partition: int) -> Released:
        """Decide the inputs at the head of the row's queue that can be decided, in order.

        Each is tried twice (deciding is pure); one that fails both times is set aside
        (dead-lettered as PROCESSING_FAILED, with no event) and the next goes on, so one
        bad input never holds its account's queue. Its command id stays claimed: a copy
        of it is a duplicate, whose outcome is that dead letter.
        """
        ready, rest = pending.release(row.pending)
        released = Released(replace(row, pending=rest))
        account = row.account
        for entry in ready:
            place = (partition, *entry.position)
            try:
                command, decision, after = tried_twice(
                    partial(_decide_entry, account, entry),
                    f"deciding input {entry.position}",
                    (MalformedLeg,),
                )
            except MalformedLeg as exc:  # a leg no real debit can have sent: nothing moves
                released.records.append(self.pending_letter(entry, partition, exc))
                released.decided[place] = Handled.DEAD_LETTERED
                continue
            except Exception as exc:
                log.error(
                    "setting aside input %s of partition %s: %r",
                    entry.position,
                    partition,
                    exc,
                    exc_info=exc,
                )
                metrics.processing_failures_total.labels("process_commands").inc()
                released.records.append(
                    self.pending_letter(entry, partition, exc, "PROCESSING_FAILED")
                )
                released.decided[place] = Handled.SET_ASIDE
                continue
            account = after
            released.records += [
                Record(events_topic, codec.key(e.account_id), codec.dumps(e.to_dict()))
                for e in decision.events
            ]
            released.legs += [(leg, entry.timestamp) for leg in decision.legs]
            if entry.answer is Answer.DUPLICATE:
                log.info("command %s already decided; ignoring the copy", command.command_id)
                metrics.duplicates_total.labels(command.type).inc()
                released.decided[place] = Handled.DUPLICATE
                continue
            released.applied.append((command, decision))
            reused = entry.answer is Answer.REUSED
            released.decided[place] = Handled.REUSED if reused else Handled.APPLIED
        released.row = replace(released.row, account=account)
        return released

    def pending_letter(
        self, entry: pending.Pending, partition: int, exc: Exception, reason: str | None = None
    ) -> Record:
        """The dead letter of an input decided after its record's take: built from what
        the queue kept of it (the input as parsed, without its seal)."""
        reason = reason or "MALFORMED_COMMAND"
        offset, index = entry.position
        value = codec.dumps(entry.command)
        letter = {
            "reason": reason,
            "detail": str(exc) if isinstance(exc, MalformedCommand) else repr(exc),
            "topic": commands_topic.get_topic_name(),
            "partition": partition,
            "offset": offset,
            **({"index": index} if index else {}),
            "timestamp": _safe_iso(entry.timestamp),
            "key": entry.command.get("account_id"),
            "value": value.decode(),
            "value_bytes": len(value),
            "value_truncated": False,
        }
        metrics.dead_letters_total.labels(reason).inc()
        key = codec.key(entry.command.get("account_id", ""))
        return Record(dead_letters_topic, key, codec.dumps(letter))

    def apply_leg(
        self,
        batch: Batch,
        source: Input,
        command: Command,
        row: AccountRow | None,
        seen: Position | None,
    ) -> Handled:
        """A saga leg with nothing pending on its account, decided at once."""
        partition = source.partition
        occurred_at = codec.iso_timestamp(source.timestamp)
        try:
            result = process(row, command, source.position, occurred_at, seen)
        except MalformedLeg as exc:  # a leg no real debit can have sent: nothing moves
            return self.malformed(batch, source, exc, command.to_dict())
        if result.duplicate:
            return self.copy(batch, source, command, result.record_offset, "applied")
        # Everything is computed before ``batch`` changes (see ``isolated``).
        records = [
            Record(events_topic, codec.key(e.account_id), codec.dumps(e.to_dict()))
            for e in result.decision.events
        ]
        batch.records += records
        # A leg keeps the input's timestamp, so a reprocessed input sends an identical
        # leg and the leg's events get identical ``occurred_at``.
        batch.legs += [(leg, source.timestamp) for leg in result.decision.legs]
        batch.rows[command.account_id] = (result.row, partition)
        batch.offsets[command.dedupe_id] = (source.position, partition)
        batch.applied.append((command, result.decision))
        return Handled.APPLIED

    def dead_letter(self, source: Input, exc: Exception, reason: str | None = None) -> list[Record]:
        """The dead letter of an input (its refusal, if any, comes from its claim).

        Built from the record as it came, so that it cannot fail on what made the input
        bad (a value that is not UTF-8, a timestamp no date can show).
        """
        message = source.message
        value = source.value
        if reason is None:
            reason = (
                "FORGED_LEG"
                if isinstance(exc, leg_seal.ForgedLeg)
                else "MALFORMED_COMMAND"
                if isinstance(exc, MalformedCommand)
                else "INVALID_JSON"
            )
        entry = {
            "reason": reason,
            "detail": str(exc) if isinstance(exc, MalformedCommand | ValueError) else repr(exc),
            **_place(source),
            "timestamp": _safe_iso(source.timestamp),
            "key": _printable(message.key),
            # The input as it came, up to a size a dead-letter record can always carry.
            "value": _printable(value[: codec.DEAD_LETTER_VALUE_BYTES])
            if value is not None
            else None,
            "value_bytes": len(value) if value is not None else 0,
            "value_truncated": len(value or b"") > codec.DEAD_LETTER_VALUE_BYTES,
        }
        log.warning(
            "dead-lettering %s[%s]@%s%s: %s",
            message.topic,
            message.partition,
            message.offset,
            f" item {source.index}" if source.bundled else "",
            exc,
        )
        records = [Record(dead_letters_topic, message.key or b"", codec.dumps(entry))]
        metrics.dead_letters_total.labels(reason).inc()
        return records


class _Unparsed(Command):
    """Stands in for a command that failed to parse, so its rejection has the usual shape."""

    type = "UNPARSED"


#: The internal types: saga legs, which only workers send.
LEG_TYPES = frozenset(name for name, cls in COMMAND_TYPES.items() if not cls.public)

#: The command side's tables, written by this agent alone.
TABLES = (accounts_table, command_offsets_table, command_claims_table)

processor = CommandProcessor(KafkaOutbox())


def malformed_claim(source: Input, exc: MalformedCommand, data: Any) -> ClaimCommandId | None:
    """The claim of a malformed command's id, carrying what its refusal needs; None when
    it names no command id or no account, or its timestamp shows no date."""
    account_id = data.get("account_id") if isinstance(data, dict) else None
    if (
        exc.command_id is None
        or not isinstance(account_id, str)
        or not ACCOUNT_ID_RE.fullmatch(account_id)
        or not codec.valid_timestamp(source.timestamp)
    ):
        return None
    kind = data.get("type")
    text = codec.dumps(data).decode()
    offset, index = source.position
    return ClaimCommandId(
        command_id=exc.command_id,
        account_id=account_id,
        fingerprint=fingerprint_of(data),
        offset=offset,
        index=index,
        refusal=exc.detail[:MAX_REFUSAL_LENGTH],
        command_type=kind[:MAX_TYPE_LENGTH] if isinstance(kind, str) else "",
        command_json=text if len(text) <= MAX_REFUSED_JSON else None,
    )


def refusal(leg: ClaimCommandId, said: Answer, timestamp: float) -> list[Record]:
    """A malformed command's refusal, once its id's claim has answered: under the id when
    the id is its own, under its own use when another command had it, none for a copy."""
    if said is Answer.DUPLICATE:
        return []
    stand_in = _Unparsed(command_id=leg.command_id, account_id=leg.account_id)
    occurred_at = codec.iso_timestamp(timestamp)
    if said is Answer.REUSED:
        position = (leg.offset, leg.index)
        event = reused_rejection(stand_in, leg.fingerprint, position, occurred_at)
        command = stand_in.to_dict()
    else:
        error = MalformedCommand(leg.refusal or "", leg.command_id)
        event = rejection(stand_in, error, occurred_at)
        command = codec.loads(leg.command_json) if leg.command_json else stand_in.to_dict()
    payload = {**event.to_dict(), "command_type": leg.command_type or "", "command": command}
    return [Record(events_topic, codec.key(leg.account_id), codec.dumps(payload))]


def _decide_entry(
    account: Account | None, entry: pending.Pending
) -> tuple[Command, Decision, Account | None]:
    return decide_pending(account, entry, codec.iso_timestamp(entry.timestamp))


def _place(source: Input) -> dict[str, Any]:
    """Where an input was, as its dead letter tells it."""
    message = source.message
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        **({"index": source.index} if source.bundled else {}),
    }


@app.agent(commands_topic)
async def process_commands(stream: faust.StreamT[bytes]) -> AsyncIterator[Outcomes]:
    """Decide every command and saga leg against its account; emit events and legs."""
    async for events in takes(stream):
        yield await processor.handle_take(events)
