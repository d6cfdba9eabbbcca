"""Properties of the whole command side, on random histories with at-least-once delivery.

``Bank`` simulates what the Faust worker does with the pure parts: one FIFO queue per
account (its slice of a partition of the commands topic, offsets increasing), one
``AccountRow`` per account (the ``accounts`` table), the ``command-offsets`` table,
and the events topic, folded into ``Ledger``. Hypothesis chooses the commands, which
queue to step next (so saga legs interleave in any order), where the worker crashes,
which records are redelivered, and which commands a client sends again.

Saga legs go out as the agent sends them, in bundles: the legs of one take share a
record's offset, each at its own index, so one account's queue can hold several
inputs at one offset.

A crash happens after the events and legs went out (all of them or a prefix) and
leaves no table written, only the command-id table (its changelog kept, the row's
lost), or only the row (the agent writes it first); the record is then redelivered
at the same offset. The row's window of recent ids is the real one or a tiny one, so
that both it and the command-id table are exercised.

After a crash between the row and the command-id writes, the redelivered input is a
duplicate by the row, and the worker records its offset then (``Result.record_offset``),
as the agent does; otherwise a copy after the row's window would be applied again.

The last property (``Forgery``) lets a hostile client write saga legs of its own too,
and checks that the ones refused move nothing and the books still balance.
"""

from __future__ import annotations

import copy
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from unittest.mock import patch

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from banking_app.domain import (
    Account,
    CloseAccount,
    Command,
    CreateAccount,
    CreditTransfer,
    Decision,
    Deposit,
    MalformedLeg,
    RefundTransfer,
    SetLimits,
    SettleTransfer,
    TransferMoney,
    Withdraw,
    decide,
    evolve,
    parse_command,
)
from banking_app.domain import events as ev
from banking_app.domain.ledger import Ledger
from banking_app.event_processor import idempotency as processing
from banking_app.event_processor.idempotency import RECENT_WINDOW, AccountRow, process

ACCOUNT_IDS = ("acc-a", "acc-b", "acc-c", "acc-d")
CURRENCIES = ("EUR", "USD")
MAX_AMOUNT = 10**15  # written out, not imported: the reference model is independent
MAX_BALANCE = 10**18
MAX_CRASHES = 8

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the reference model --------------------------------------------------------------


@dataclass
class RefAccount:
    currency: str
    overdraft: int
    balance: int = 0
    version: int = 1
    open: bool = True
    outgoing: int = 0  # transfers debited here, not yet settled or refunded
    # Daily limits, and what left the account today (every stamp here is one day).
    withdrawal_limit: int | None = None
    transfer_limit: int | None = None
    withdrawn_today: int = 0
    transferred_today: int = 0


@dataclass
class RefTransfer:
    source: str
    destination: str
    amount: int
    currency: str
    credited: bool = False
    refunded: bool = False
    #: why the destination refused the credit, once it has committed that
    refused_for: str | None = None


@dataclass
class Reference:
    """The bank's rules written out again on plain data, without ``decide`` or ``evolve``.

    It is told each input once, when the worker commits it, and answers what the
    outcome must be: ``(event type, reason)``, or ``("refund", reason)`` when a
    credit fails and the money is sent back.
    """

    accounts: dict[str, RefAccount] = field(default_factory=dict)
    transfers: dict[str, RefTransfer] = field(default_factory=dict)
    applied: set[tuple[str, str]] = field(default_factory=set)
    deposited: Counter[str] = field(default_factory=Counter)
    withdrawn: Counter[str] = field(default_factory=Counter)
    #: every public command sent, by id (the simulator tells it)
    sent: dict[str, Command] = field(default_factory=dict)

    @staticmethod
    def key(command: Command) -> tuple[str, str]:
        internal = isinstance(command, CreditTransfer | RefundTransfer | SettleTransfer)
        return (type(command).__name__ if internal else "public", command.command_id)

    def has_applied(self, command: Command) -> bool:
        return self.key(command) in self.applied

    def apply(self, c: Command) -> tuple[str, str]:
        assert not self.has_applied(c), f"{c} applied twice"
        self.applied.add(self.key(c))
        return self._outcome(c)

    def _outcome(self, c: Command) -> tuple[str, str]:
        account = self.accounts.get(c.account_id)
        if isinstance(c, CreateAccount):
            if account is not None:
                return ("CommandRejected", "ACCOUNT_ALREADY_EXISTS")
            if c.expected_version not in (None, 0):
                return ("CommandRejected", "VERSION_CONFLICT")
            self.accounts[c.account_id] = RefAccount(c.currency, c.overdraft_limit)
            return ("AccountCreated", "")
        if isinstance(c, CreditTransfer):
            return self._credit(c)
        if isinstance(c, RefundTransfer | SettleTransfer):
            transfer = self.transfers[c.command_id]
            source = self.accounts[transfer.source]
            assert c.account_id == transfer.source
            source.outgoing -= 1
            if ("CreditTransfer", c.command_id) in self.applied:
                reason = transfer.refused_for
            else:
                # The leg came back before the destination committed the credit (its
                # worker crashed after sending the leg); the destination cannot have
                # moved since, as the credit is at the head of its queue.
                reason = self._credit_refused(transfer)
            if isinstance(c, SettleTransfer):
                assert reason is None, f"settled, but the credit is refused: {reason}"
                return ("TransferSettled", "")
            assert reason is not None, "refunded, but the credit is accepted"
            transfer.refunded = True
            source.balance += transfer.amount
            source.version += 1
            return ("TransferRefunded", reason)
        if isinstance(c, TransferMoney) and c.to_account_id == c.account_id:
            return ("CommandRejected", "SAME_ACCOUNT")
        if account is None:
            return ("CommandRejected", "ACCOUNT_NOT_FOUND")
        if not account.open:
            return ("CommandRejected", "ACCOUNT_CLOSED")
        if c.expected_version is not None and c.expected_version != account.version:
            return ("CommandRejected", "VERSION_CONFLICT")
        if isinstance(c, CloseAccount):
            if account.balance != 0 or account.outgoing:
                return ("CommandRejected", "BALANCE_NOT_ZERO")
            account.open = False
            account.version += 1
            return ("AccountClosed", "")
        if isinstance(c, SetLimits):
            account.withdrawal_limit = c.daily_withdrawal_limit
            account.transfer_limit = c.daily_transfer_limit
            account.version += 1
            return ("LimitsSet", "")
        assert isinstance(c, Deposit | Withdraw | TransferMoney)
        if not 1 <= c.amount <= MAX_AMOUNT:
            return ("CommandRejected", "INVALID_AMOUNT")
        if isinstance(c, Deposit):
            if account.balance + c.amount > MAX_BALANCE:
                return ("CommandRejected", "INVALID_AMOUNT")
            account.balance += c.amount
            account.version += 1
            self.deposited[account.currency] += c.amount
            return ("MoneyDeposited", "")
        if account.balance - c.amount < -account.overdraft:
            return ("CommandRejected", "INSUFFICIENT_FUNDS")
        if isinstance(c, Withdraw):
            limit, spent = account.withdrawal_limit, account.withdrawn_today
        else:
            limit, spent = account.transfer_limit, account.transferred_today
        if limit is not None and spent + c.amount > limit:
            return ("CommandRejected", "LIMIT_EXCEEDED")
        if isinstance(c, Withdraw):
            account.withdrawn_today += c.amount
        else:
            account.transferred_today += c.amount
        account.balance -= c.amount
        account.version += 1
        if isinstance(c, Withdraw):
            self.withdrawn[account.currency] += c.amount
            return ("MoneyWithdrawn", "")
        account.outgoing += 1
        transfer = RefTransfer(c.account_id, c.to_account_id, c.amount, account.currency)
        known = self.transfers.setdefault(c.command_id, transfer)  # known if credited first
        assert (known.source, known.destination, known.amount, known.currency) == (
            transfer.source,
            transfer.destination,
            transfer.amount,
            transfer.currency,
        )
        return ("TransferDebited", "")

    def _credit_refused(self, transfer: RefTransfer) -> str | None:
        """Why the destination refuses the money now (None: it takes it)."""
        destination = self.accounts.get(transfer.destination)
        if destination is None:
            return "ACCOUNT_NOT_FOUND"
        if not destination.open:
            return "ACCOUNT_CLOSED"
        if destination.currency != transfer.currency:
            return "CURRENCY_MISMATCH"
        if destination.balance + transfer.amount > MAX_BALANCE:
            return "INVALID_AMOUNT"
        return None

    def _debit_not_yet_committed(self, command_id: str) -> RefTransfer:
        """The transfer of a credit leg that overtook the commit of its own debit.

        The source's worker sent the leg and crashed before writing its row; the debit
        is at the head of the source's queue, so the source cannot have moved since and
        the debit, decided again, must be accepted. Decide it on a copy to learn it.
        """
        trial = copy.deepcopy(self)
        assert trial._outcome(self.sent[command_id]) == ("TransferDebited", "")
        return trial.transfers[command_id]

    def _credit(self, c: CreditTransfer) -> tuple[str, str]:
        if c.command_id not in self.transfers:
            self.transfers[c.command_id] = self._debit_not_yet_committed(c.command_id)
        transfer = self.transfers[c.command_id]
        assert c.account_id == transfer.destination
        reason = self._credit_refused(transfer)
        if reason is not None:
            transfer.refused_for = reason
            return ("refund", reason)
        destination = self.accounts[transfer.destination]
        destination.balance += transfer.amount
        destination.version += 1
        transfer.credited = True
        return ("TransferCredited", "")

    def money_in_flight(self) -> int:
        """Debited and neither credited nor refunded yet."""
        return sum(t.amount for t in self.transfers.values() if not (t.credited or t.refunded))


def outcome(decision: Decision) -> tuple[str, str]:
    """What ``decide`` said, in the reference model's terms."""
    if decision.events:
        (only,) = decision.events
        return (only.type, getattr(only, "reason", ""))
    (refund,) = decision.legs
    assert isinstance(refund, RefundTransfer)
    return ("refund", refund.reason)


# -- the simulated worker -------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One input: a whole record (index 0) or one leg of a bundle record (several
    inputs share the offset; ``index`` orders them)."""

    offset: int
    command: Command
    timestamp: str
    index: int = 0

    @property
    def position(self) -> processing.Position:
        return (self.offset, self.index)


@dataclass
class Bank:
    #: one queue per account id, the ids of accounts that never exist included
    queues: defaultdict[str, deque[Record]] = field(default_factory=lambda: defaultdict(deque))
    rows: dict[str, AccountRow] = field(default_factory=dict)
    command_offsets: dict[str, processing.Position] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    reference: Reference = field(default_factory=Reference)
    emitted: dict[str, ev.Event] = field(default_factory=dict)
    #: public commands sent by clients, by command id
    sent: dict[str, Command] = field(default_factory=dict)
    #: every record each account's queue delivered and the worker finished with
    history: defaultdict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    next_offset: int = 0
    #: the position of the last leg put in a bundle not yet closed
    open_bundle: tuple[int, int] | None = None
    crashes: int = 0
    duplicates: int = 0
    replays: int = 0
    #: the row's window of recent ids (processing.RECENT_WINDOW while this bank runs)
    window: int = RECENT_WINDOW
    #: the ids of every input committed to a row
    committed: set[str] = field(default_factory=set)

    # -- producers --

    def produce(
        self, command: Command, timestamp: str | None = None, bundled: bool = False
    ) -> None:
        """Append an input; a ``bundled`` one joins the open bundle when there is one (the
        legs of one take share a record), whichever account it is for."""
        if bundled and self.open_bundle is not None:
            offset, index = self.open_bundle[0], self.open_bundle[1] + 1
        else:
            offset, index = self.next_offset, 0
            self.next_offset += 1
        self.open_bundle = (offset, index) if bundled else None
        stamp = timestamp if timestamp is not None else f"2024-01-01T00:00:{offset:06d}Z"
        self.queues[command.account_id].append(Record(offset, command, stamp, index))

    def close_bundle(self) -> None:
        self.open_bundle = None

    def send(self, command: Command) -> None:
        """A client sends a new public command."""
        assert command.public
        assert command.command_id not in self.sent
        self.sent[command.command_id] = command
        self.reference.sent[command.command_id] = command
        self.produce(command)

    def resend(self, command_id: str) -> None:
        """A client (or its producer) sends the same command again, at a later offset."""
        self.produce(self.sent[command_id])

    def replay(self, account_id: str, count: int) -> None:
        """A restart from an older committed offset: finished records are delivered again."""
        records = self.history[account_id][-count:]
        self.queues[account_id].extendleft(reversed(records))

    # -- the worker --

    def row(self, account_id: str) -> AccountRow:
        return self.rows.get(account_id, AccountRow())

    def emit(self, event: ev.Event) -> None:
        earlier = self.emitted.setdefault(event.event_id, event)
        assert earlier == event, f"event id {event.event_id} reused for {earlier} and {event}"
        self.ledger.apply(event)

    def step(
        self, account_id: str, crash: str | None = None, emitted: int = 0, retry: bool = False
    ) -> None:
        """Handle the record at the head of the account's queue, as the agent does.

        ``crash`` is None (all went well), ``"lost"`` (no table written),
        ``"seen-only"`` (only the command-id table survived) or ``"row-only"`` (the row
        was written, not the command-id table); ``emitted`` is how many of the outputs
        reached the broker before a crash that wrote no row; ``retry`` makes the
        producer send each leg twice (a retry after a lost acknowledgement).
        """
        record = self.queues[account_id].popleft()
        command = record.command
        assert command.account_id == account_id
        row = self.rows.get(account_id)
        seen_at = self.command_offsets.get(command.dedupe_id)
        result = process(row, command, record.position, record.timestamp, seen_at)

        if result.duplicate:
            self.duplicates += 1
            # A duplicate emits nothing and changes nothing ...
            assert result.decision.events == []
            assert result.decision.legs == []
            assert result.row == self.row(account_id)
            # ... and is a duplicate of something that really was applied.
            assert self.reference.has_applied(command), f"{command} skipped, never applied"
            if result.record_offset:
                # The row applied it, the command-id table missed it: record it now.
                assert command.dedupe_id not in self.command_offsets
                self.command_offsets[command.dedupe_id] = record.position
            self.history[account_id].append(record)
            return

        # Not a duplicate: it must be the first time this input is committed.
        assert not self.reference.has_applied(command), f"{command} applied a second time"
        outputs: list[ev.Event | Command] = [*result.decision.events, *result.decision.legs]
        if crash in ("lost", "seen-only"):
            outputs = outputs[:emitted]
        for output in outputs:
            if isinstance(output, ev.Event):
                self.emit(output)
            else:
                # A leg keeps its parent's timestamp, and goes out in a bundle.
                self.produce(output, record.timestamp, bundled=True)
                if retry:
                    self.produce(output, record.timestamp, bundled=True)

        if crash in ("lost", "seen-only"):
            self.crashes += 1
            if crash == "seen-only":
                self.command_offsets[command.dedupe_id] = record.position
            self.queues[account_id].appendleft(record)  # redelivered at the same offset
            return

        assert outcome(result.decision) == self.reference.apply(command)
        self.rows[account_id] = result.row
        self.committed.add(command.dedupe_id)
        self.history[account_id].append(record)
        if crash == "row-only":
            self.crashes += 1
            self.queues[account_id].appendleft(record)  # redelivered at the same offset
            return
        self.command_offsets[command.dedupe_id] = record.position

    def pending(self) -> list[str]:
        return sorted(account_id for account_id, queue in self.queues.items() if queue)


# -- driving the bank from hypothesis ------------------------------------------------

# Weighted by repetition: mostly money moving, some delivery, now and then an account
# opened or closed (closing early would leave little else to do), resends and replays.
ACTIONS = (
    *["deposit"] * 4,
    "withdraw",
    *["transfer"] * 4,
    *["step"] * 4,
    "create",
    "close",
    "limits",
    *["resend"] * 2,
    "replay",
)


def chance(data: st.DataObject, one_in: int) -> bool:
    """True about once in ``one_in`` draws (and False when shrunk)."""
    return data.draw(st.sampled_from([False] * (one_in - 1) + [True]))


def draw_expected_version(data: st.DataObject, bank: Bank, account_id: str) -> int | None:
    kind = data.draw(st.sampled_from(["none"] * 6 + ["current", "any"]))
    if kind == "none":
        return None
    if kind == "current":
        row = bank.row(account_id)
        return row.account.version if row.account else 0
    return data.draw(st.integers(0, 8))


def id_maker() -> Callable[[str], str]:
    """Fresh ids for one run: ``prefix-n``, with one count across every prefix."""
    counter = iter(range(10**6))

    def new_id(prefix: str) -> str:
        return f"{prefix}-{next(counter)}"

    return new_id


def draw_amount(data: st.DataObject, most: int = 300) -> int:
    if chance(data, 10):
        return data.draw(st.sampled_from([0, -1, MAX_AMOUNT + 1]))  # INVALID_AMOUNT
    return data.draw(st.integers(1, most))


def open_most(
    data: st.DataObject,
    bank: Bank | Forgery,
    accounts: Sequence[str],
    new_id: Callable[[str], str],
) -> None:
    """Most accounts are opened first, each in one of two currencies; some never are."""
    for account_id in accounts:
        if data.draw(st.sampled_from([True, True, True, False])):
            bank.send(
                CreateAccount(
                    command_id=new_id("create"),
                    account_id=account_id,
                    owner=account_id.upper(),
                    currency=data.draw(st.sampled_from(CURRENCIES)),
                    overdraft_limit=data.draw(st.sampled_from([0, 100])),
                )
            )


def step_somewhere(data: st.DataObject, bank: Bank) -> None:
    step_account(data, bank, data.draw(st.sampled_from(bank.pending())))


def step_account(data: st.DataObject, bank: Bank, account_id: str) -> None:
    if bank.queues[account_id][0].index:
        event("an input shared its record's offset with another")
    crash = None
    emitted = 0
    if bank.crashes < MAX_CRASHES:
        crash = data.draw(st.sampled_from([None] * 5 + ["lost", "seen-only", "row-only"]))
        emitted = data.draw(st.integers(0, 2))
    bank.step(account_id, crash, emitted, retry=chance(data, 4))
    if crash or chance(data, 2):
        bank.close_bundle()  # the take ends (or the worker died): the next leg opens one


def run(data: st.DataObject) -> Bank:
    window = data.draw(st.sampled_from([RECENT_WINDOW, 2]), label="window")
    with patch.object(processing, "RECENT_WINDOW", window):
        return run_with_window(data, window)


def run_with_window(data: st.DataObject, window: int) -> Bank:
    bank = Bank(window=window)
    accounts = ACCOUNT_IDS[: data.draw(st.integers(3, 4), label="accounts")]
    new_id = id_maker()
    open_most(data, bank, accounts, new_id)

    for _ in range(data.draw(st.integers(10, 60), label="actions")):
        action = data.draw(st.sampled_from(ACTIONS))
        account_id = data.draw(st.sampled_from(accounts))

        def version(account_id: str = account_id) -> int | None:
            return draw_expected_version(data, bank, account_id)

        if action == "step":
            for _ in range(data.draw(st.integers(1, 4))):
                if bank.pending():
                    step_somewhere(data, bank)
        elif action == "create":
            bank.send(
                CreateAccount(
                    command_id=new_id("create"),
                    account_id=account_id,
                    owner="Late",
                    currency=data.draw(st.sampled_from(CURRENCIES)),
                    overdraft_limit=data.draw(st.sampled_from([0, 100])),
                    expected_version=version(),
                )
            )
        elif action == "deposit":
            bank.send(Deposit(new_id("dep"), account_id, version(), draw_amount(data, 1000)))
        elif action == "withdraw":
            row = bank.row(account_id)
            if row.account is not None and chance(data, 3):
                # Exactly down to the overdraft limit, if nothing moves before it lands.
                limit = row.account.balance + row.account.overdraft_limit
                bank.send(Withdraw(new_id("wd"), account_id, None, limit))
            else:
                bank.send(Withdraw(new_id("wd"), account_id, version(), draw_amount(data)))
        elif action == "transfer":
            # Mostly another account in play (closed, or in the other currency, maybe);
            # now and then any id: one never opened, or the source itself.
            others = [other for other in accounts if other != account_id]
            to = data.draw(st.sampled_from(others if not chance(data, 5) else ACCOUNT_IDS))
            bank.send(TransferMoney(new_id("tr"), account_id, version(), to, draw_amount(data)))
        elif action == "close":
            # Close as it stands, or first withdraw or transfer away what the row holds
            # now (the close may then find the transfer still in flight).
            how = data.draw(st.sampled_from(["close", "withdraw", "transfer"]))
            if how != "close":
                while bank.queues[account_id]:  # settle this account's queue first
                    step_account(data, bank, account_id)
            row = bank.row(account_id)
            if how != "close" and row.account is not None and row.account.balance > 0:
                held = row.account.balance
                if how == "withdraw":
                    bank.send(Withdraw(new_id("wd"), account_id, None, held))
                else:
                    to = data.draw(st.sampled_from([a for a in accounts if a != account_id]))
                    bank.send(TransferMoney(new_id("tr"), account_id, None, to, held))
            bank.send(CloseAccount(new_id("close"), account_id, version()))
        elif action == "limits":
            # Daily limits come and go: refusals must move nothing, as any other.
            limits = st.one_of(st.none(), st.integers(0, 500))
            bank.send(
                SetLimits(
                    new_id("limits"),
                    account_id,
                    version(),
                    daily_withdrawal_limit=data.draw(limits),
                    daily_transfer_limit=data.draw(limits),
                )
            )
        elif action == "resend":
            if bank.sent:
                bank.resend(data.draw(st.sampled_from(sorted(bank.sent))))
        elif action == "replay" and bank.history[account_id]:
            bank.replay(account_id, data.draw(st.integers(1, 8)))
            bank.replays += 1

    # Drain: deliver everything left, legs included, in an order of hypothesis' choosing.
    while bank.pending():
        step_somewhere(data, bank)
    event(f"crashes: {min(bank.crashes, 3)}")
    event("some duplicates" if bank.duplicates else "no duplicates")
    return bank


# -- the properties -------------------------------------------------------------------


def terminal_outcomes(bank: Bank) -> Counter[str]:
    """How many terminal events each command id has, over every distinct event emitted."""
    return Counter(e.command_id for e in bank.emitted.values() if e.type in ev.TERMINAL_TYPES)


@PROPERTY_SETTINGS
@given(st.data())
def test_the_books_balance_after_any_history(data: st.DataObject) -> None:
    bank = run(data)
    ledger = bank.ledger

    # Balances + in flight = deposits - withdrawals per currency; no balance below its
    # overdraft; seq gapless per account; one outcome per command; nothing on closed.
    assert ledger.check() == []

    # Every public command sent has exactly one terminal outcome, and nothing else has.
    assert terminal_outcomes(bank) == Counter(list(bank.sent))
    assert ledger.commands_with_outcome == len(bank.sent)

    # Every input applied is in the command-id table, so any later copy is caught.
    assert bank.committed <= bank.command_offsets.keys()

    # Once all legs are delivered, no money is in flight anywhere.
    assert +ledger.money_in_flight() == Counter()
    for account_id, row in bank.rows.items():
        if row.account is not None:
            assert (row.account.in_flight, row.account.in_flight_count) == (0, 0), account_id

    # The ledger folded from the events alone agrees with the table rows.
    row_accounts = {
        account_id: row.account for account_id, row in bank.rows.items() if row.account is not None
    }
    assert ledger.accounts.keys() == row_accounts.keys()
    for account_id, account in row_accounts.items():
        folded = ledger.accounts[account_id]
        assert (folded.balance, folded.version, folded.status, folded.in_flight) == (
            account.balance,
            account.version,
            account.status,
            account.in_flight,
        ), account_id
        assert folded == account  # and indeed in every other field they share

    # Every event was folded once: the ledger saw each distinct event id exactly once.
    assert sum(ledger.events_by_type.values()) == len(bank.emitted)

    # A row's version is the seq of its last event.
    for account_id, account in row_accounts.items():
        seqs = [e.seq for e in bank.emitted.values() if e.account_id == account_id and e.seq]
        assert account.version == max(seqs) == len(seqs)


@PROPERTY_SETTINGS
@given(st.data())
def test_a_reference_model_agrees_with_the_final_balances(data: st.DataObject) -> None:
    bank = run(data)
    reference = bank.reference

    # Every input was committed exactly once (step() checked each outcome on the way).
    assert {key[1] for key in reference.applied if key[0] == "public"} == set(bank.sent)

    rows = {
        account_id: row.account for account_id, row in bank.rows.items() if row.account is not None
    }
    assert rows.keys() == reference.accounts.keys()
    for account_id, expected in reference.accounts.items():
        actual = rows[account_id]
        assert actual.balance == expected.balance, account_id
        assert actual.version == expected.version, account_id
        assert actual.is_open == expected.open, account_id
        assert actual.currency == expected.currency, account_id
        assert actual.in_flight_count == expected.outgoing == 0, account_id
    assert reference.money_in_flight() == 0

    # Money is only made by deposits and destroyed by withdrawals, per currency.
    held: Counter[str] = Counter()
    for account in reference.accounts.values():
        held[account.currency] += account.balance
    for currency in CURRENCIES:
        assert held[currency] == reference.deposited[currency] - reference.withdrawn[currency]
        assert bank.ledger.deposited[currency] == reference.deposited[currency]
        assert bank.ledger.withdrawn[currency] == reference.withdrawn[currency]


# -- the simulator itself is not vacuous ----------------------------------------------


def test_the_simulator_sees_crashes_duplicates_and_every_failed_credit() -> None:
    bank = Bank()
    bank.send(CreateAccount("c-a", "acc-a", None, "A", "EUR", 100))
    bank.send(CreateAccount("c-b", "acc-b", None, "B", "EUR", 0))
    bank.send(CreateAccount("c-c", "acc-c", None, "C", "EUR", 0))
    bank.send(CreateAccount("c-d", "acc-d", None, "D", "USD", 0))
    bank.send(CloseAccount("x-c", "acc-c", None))
    bank.send(Deposit("d-1", "acc-a", None, 500))
    bank.send(TransferMoney("t-ok", "acc-a", None, "acc-b", 100))
    bank.send(TransferMoney("t-closed", "acc-a", None, "acc-c", 10))
    bank.send(TransferMoney("t-usd", "acc-a", None, "acc-d", 50))
    bank.send(TransferMoney("t-none", "acc-a", None, "acc-z", 25))
    bank.resend("d-1")
    for account_id in ("acc-a", "acc-b", "acc-c", "acc-c", "acc-d"):
        bank.step(account_id)  # the creates, and acc-c closed while empty
    bank.step("acc-a", crash="lost", emitted=1)  # the deposit's event went out, no writes
    bank.step("acc-a", crash="seen-only", emitted=0)
    for _ in range(5):
        bank.step("acc-a")  # the deposit at last, and four transfers
    # Their four credit legs went out in one bundle: one offset, an index each.
    credits = [bank.queues[a][0] for a in ("acc-b", "acc-c", "acc-d", "acc-z")]
    assert len({r.offset for r in credits}) == 1
    assert [r.index for r in credits] == [0, 1, 2, 3]
    assert bank.duplicates == 0
    bank.step("acc-a")  # the resent deposit
    assert bank.duplicates == 1
    bank.step("acc-b", crash="lost", emitted=2)  # credited and settle leg sent, then crash
    # The settle leg reaches the source before the destination commits the credit.
    assert [r.command.type for r in bank.queues["acc-a"]] == ["TRANSFER_SETTLE"]
    bank.step("acc-a")
    while bank.pending():
        bank.step(bank.pending()[0])
    bank.replay("acc-a", 3)
    bank.replay("acc-b", 2)
    while bank.pending():
        bank.step(bank.pending()[0])

    assert bank.crashes == 3
    # the resend, the second copy of the settle leg, and the five replayed records
    assert bank.duplicates == 1 + 1 + 5
    assert bank.ledger.check() == []
    refunds = [e for e in bank.emitted.values() if isinstance(e, ev.TransferRefunded)]
    assert sorted((e.transfer_id, e.reason) for e in refunds) == [
        ("t-closed", "ACCOUNT_CLOSED"),
        ("t-none", "ACCOUNT_NOT_FOUND"),
        ("t-usd", "CURRENCY_MISMATCH"),
    ]
    balances = {a: r.account.balance for a, r in bank.rows.items() if r.account}
    assert balances == {"acc-a": 400, "acc-b": 100, "acc-c": 0, "acc-d": 0}
    assert bank.rows["acc-z"].account is None
    assert bank.ledger.commands_with_outcome == len(bank.sent) == 10
    assert terminal_outcomes(bank) == Counter(list(bank.sent))
    assert bank.reference.money_in_flight() == 0


def test_the_ledger_would_notice_a_lost_refund() -> None:
    # The end-of-run checks can fail: drop one leg and the books no longer balance.
    bank = Bank()
    bank.send(CreateAccount("c-a", "acc-a", None, "A", "EUR", 0))
    bank.send(Deposit("d-1", "acc-a", None, 100))
    bank.send(TransferMoney("t-1", "acc-a", None, "acc-b", 60))
    for _ in range(3):
        bank.step("acc-a")
    bank.step("acc-b")  # no such account: a refund leg goes back to acc-a
    assert [r.command.type for r in bank.queues["acc-a"]] == ["TRANSFER_REFUND"]
    bank.queues["acc-a"].clear()  # ... and is lost
    assert bank.ledger.check() == []  # still in flight: the books balance so far
    assert bank.ledger.money_in_flight() == Counter({"EUR": 60})
    assert bank.rows["acc-a"].account.in_flight == 60
    assert terminal_outcomes(bank) == Counter({"c-a": 1, "d-1": 1})
    assert bank.ledger.commands_with_outcome == 2


# -- forged legs ----------------------------------------------------------------------
#
# A hostile client that can write the commands topic sends saga legs of its own: any
# type, any account, any amount (negative, zero, huge, a float, a bool), a bad currency
# or reason, its own account as the counterparty, fields missing. Each goes through
# ``parse_command`` and ``decide`` as the worker would; a refused one (``MalformedLeg``)
# is dropped, as the dead-letter topic drops it. Crashes and redelivery are the
# properties above; here every input is applied once, in its account's order.
#
# Forged legs carry command ids of their own. One under a real transfer's id would
# share that leg's dedupe id (and event id): which of the two is applied is the
# at-least-once layer's business, and keeping forged legs out is the seal's.

# What a credit can be refused for, written out (not imported) like the rest.
LEG_REASONS = {"ACCOUNT_NOT_FOUND", "ACCOUNT_CLOSED", "CURRENCY_MISMATCH", "INVALID_AMOUNT"}
COUNTERPARTY = {
    "TRANSFER_CREDIT": "from_account_id",
    "TRANSFER_REFUND": "to_account_id",
    "TRANSFER_SETTLE": "to_account_id",
}
NOWHERE = "acc-z"  # an account id that is never opened


@dataclass
class Forgery:
    """``decide`` and ``evolve`` with one FIFO queue per account, open to forged legs.

    A queued input is a typed command (from a client, or a leg ``decide`` sent) or a
    forged leg's JSON, with whether it is *tainted*: forged, or a leg ``decide`` sent in
    answer to a tainted input (the refund of a forged credit).
    """

    accounts: dict[str, Account] = field(default_factory=dict)
    queues: defaultdict[str, deque[tuple[Command | dict, bool]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    ledger: Ledger = field(default_factory=Ledger)
    #: per currency, what public commands actually deposited and withdrew
    deposited: Counter[str] = field(default_factory=Counter)
    withdrawn: Counter[str] = field(default_factory=Counter)
    #: accounts on which a tainted refund or settlement was accepted: only there can a
    #: real leg find its money in flight spoken for
    tainted_returns: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    clock: int = 0

    def send(self, command: Command) -> None:
        self.queues[command.account_id].append((command, False))

    def forge(self, data: dict) -> None:
        self.queues[data["account_id"]].append((data, True))

    def pending(self) -> list[str]:
        return sorted(account_id for account_id, queue in self.queues.items() if queue)

    def step(self, account_id: str) -> None:
        item, tainted = self.queues[account_id].popleft()
        if isinstance(item, dict):
            try:
                command = parse_command(item)
            except MalformedLeg:
                assert not well_formed_leg(item), f"a well-formed leg refused: {item}"
                self.outcomes["forged leg refused by parse_command"] += 1
                return
            assert well_formed_leg(item), f"a malformed leg read: {item}"
        else:
            command = item
        state = self.accounts.get(account_id)
        self.clock += 1
        try:
            decision = decide(state, command, f"2024-01-01T00:00:{self.clock:06d}Z")
        except MalformedLeg:
            assert isinstance(command, RefundTransfer | SettleTransfer), command
            assert not could_end_a_debit(state, command.amount), (state, command)
            # A real leg is refused only where a forged one got its money in flight first.
            assert tainted or account_id in self.tainted_returns, (state, command)
            self.outcomes[f"{'forged' if tainted else 'real'} leg refused by decide"] += 1
            return
        if isinstance(command, RefundTransfer | SettleTransfer):
            assert could_end_a_debit(state, command.amount), (state, command)
            if tainted:
                self.tainted_returns.add(account_id)
        if tainted:
            self.outcomes[f"forged {command.type} decided"] += 1
        for e in decision.events:
            if isinstance(e, ev.MoneyDeposited):
                self.deposited[e.currency] += e.amount
            elif isinstance(e, ev.MoneyWithdrawn):
                self.withdrawn[e.currency] += e.amount
            self.ledger.apply(e)
            state = evolve(state, e)
        if state is not None:
            self.accounts[account_id] = state
        for leg in decision.legs:
            self.queues[leg.account_id].append((leg, tainted))
        self.check_accounts()

    def check_accounts(self) -> None:
        assert self.ledger.violations == []
        for account in self.accounts.values():
            assert account.in_flight >= account.in_flight_count >= 0, account
            assert (account.in_flight == 0) == (account.in_flight_count == 0), account
            assert account.balance >= -account.overdraft_limit, account


def well_formed_leg(data: dict) -> bool:
    """Whether ``data`` is a leg ``decide`` could have written, by the rules written out."""
    kind = data["type"]
    needed = {"command_id", "account_id", "amount", COUNTERPARTY[kind]}
    needed |= {"TRANSFER_CREDIT": {"currency"}, "TRANSFER_REFUND": {"reason"}}.get(kind, set())
    if not needed <= data.keys() or data.get("expected_version") is not None:
        return False
    amount, currency, reason = data["amount"], data.get("currency"), data.get("reason")
    return (
        type(amount) is int
        and 1 <= amount <= MAX_AMOUNT
        and data[COUNTERPARTY[kind]] != data["account_id"]
        and (kind != "TRANSFER_CREDIT" or bool(re.fullmatch(r"[A-Z]{3}", str(currency))))
        and (kind != "TRANSFER_REFUND" or (isinstance(reason, str) and reason in LEG_REASONS))
    )


def could_end_a_debit(state: Account | None, amount: int) -> bool:
    """Whether a refund or settlement of ``amount`` fits the money the account has in
    flight: each transfer in flight holds at least one minor unit, and the only one
    holds all of it."""
    if state is None or state.in_flight_count == 0:
        return False
    others = state.in_flight_count - 1
    return amount == state.in_flight if others == 0 else state.in_flight - amount >= others


def draw_forged_leg(data: st.DataObject, bank: Forgery, accounts: list[str], id_: str) -> dict:
    kind = data.draw(st.sampled_from(sorted(COUNTERPARTY)))
    how = data.draw(st.sampled_from(["small"] * 3 + ["in flight"] * 3 + ["odd", "not an int"]))
    # Aimed, now and then, at what a real refund or settlement would carry right now.
    busy = [a for a in accounts if a in bank.accounts and bank.accounts[a].in_flight]
    if how == "in flight" and busy:
        account_id = data.draw(st.sampled_from(busy))
        amount: object = bank.accounts[account_id].in_flight
    else:
        account_id = data.draw(st.sampled_from([*accounts, NOWHERE]))
        if how == "odd":
            amount = data.draw(
                st.sampled_from(
                    [0, -1, -4_000, MAX_AMOUNT, MAX_AMOUNT + 1, 2**63 - 1, 2**63, -(2**63), 10**30]
                )
            )
        elif how == "not an int":
            amount = data.draw(st.one_of(st.floats(), st.booleans(), st.just("10"), st.none()))
        else:
            amount = data.draw(st.integers(1, 400))
    leg: dict = {"type": kind, "command_id": id_, "account_id": account_id, "amount": amount}
    # The counterparty is now and then the account itself.
    leg[COUNTERPARTY[kind]] = data.draw(st.sampled_from([*accounts, NOWHERE]))
    if kind == "TRANSFER_CREDIT":
        leg["currency"] = data.draw(st.sampled_from([*CURRENCIES, "GBP", "eur", "", 978]))
    if kind == "TRANSFER_REFUND":
        leg["reason"] = data.draw(
            st.sampled_from(
                [*sorted(LEG_REASONS), "INSUFFICIENT_FUNDS", "VERSION_CONFLICT", "NOPE"]
            )
        )
    if chance(data, 10):
        del leg[data.draw(st.sampled_from(sorted(set(leg) - {"type", "command_id", "account_id"})))]
    if chance(data, 10):
        leg["expected_version"] = data.draw(st.integers(0, 3))
    return leg


FORGED_ACTIONS = (
    *["deposit"] * 3,
    "withdraw",
    *["transfer"] * 4,
    *["forge"] * 4,
    *["step"] * 4,
    "close",
)


def run_forgery(data: st.DataObject) -> Forgery:
    bank = Forgery()
    accounts = list(ACCOUNT_IDS[: data.draw(st.integers(2, 4), label="accounts")])
    new_id = id_maker()
    open_most(data, bank, accounts, new_id)
    for _ in range(data.draw(st.integers(10, 60), label="actions")):
        action = data.draw(st.sampled_from(FORGED_ACTIONS))
        account_id = data.draw(st.sampled_from(accounts))
        if action == "step":
            for _ in range(data.draw(st.integers(1, 4))):
                if bank.pending():
                    bank.step(data.draw(st.sampled_from(bank.pending())))
        elif action == "forge":
            bank.forge(draw_forged_leg(data, bank, accounts, new_id("forged")))
        elif action == "deposit":
            bank.send(Deposit(new_id("dep"), account_id, None, draw_amount(data, 1000)))
        elif action == "withdraw":
            bank.send(Withdraw(new_id("wd"), account_id, None, draw_amount(data)))
        elif action == "transfer":
            to = data.draw(st.sampled_from([a for a in [*accounts, NOWHERE] if a != account_id]))
            bank.send(TransferMoney(new_id("tr"), account_id, None, to, draw_amount(data)))
        elif action == "close":
            bank.send(CloseAccount(new_id("close"), account_id, None))
    while bank.pending():
        bank.step(data.draw(st.sampled_from(bank.pending())))
    for outcome_seen in bank.outcomes:
        event(outcome_seen)
    return bank


@PROPERTY_SETTINGS
@given(st.data())
def test_forged_legs_never_break_the_books(data: st.DataObject) -> None:
    bank = run_forgery(data)
    ledger = bank.ledger

    # After every step (Forgery.step checked it): in_flight >= in_flight_count >= 0, no
    # balance below its overdraft, no ledger violation. And at the end, as a whole:
    assert ledger.check(complete=False) == []
    assert ledger.duplicates == 0
    balances, in_flight = ledger.balances(), ledger.money_in_flight()
    for currency in CURRENCIES:
        # Per currency, balances plus money in flight are what public commands put in
        # and took out: refused legs moved nothing.
        assert ledger.deposited[currency] == bank.deposited[currency]
        assert ledger.withdrawn[currency] == bank.withdrawn[currency]
        assert (
            balances[currency] + in_flight[currency]
            == bank.deposited[currency] - bank.withdrawn[currency]
        )

    # The accounts folded by the ledger are the bank's.
    assert ledger.accounts == bank.accounts

    # Where no forged refund or settlement was taken, every real transfer has ended:
    # forged legs did not get in the way of the real ones.
    for account_id, account in bank.accounts.items():
        if account_id not in bank.tainted_returns:
            assert (account.in_flight, account.in_flight_count) == (0, 0), account_id
