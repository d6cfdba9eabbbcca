"""The bank's books, folded from the event log alone, and the invariants they must satisfy.

Used by the property tests and by ``banking-app replay``. Events of different accounts
may be folded in any interleaving (a reader of several partitions sees them so): a
credit read before its debit simply leaves the transfer below zero until the debit
arrives, and the books balance at every cut.

Reprocessing re-emits identical events under the same id, so the ledger drops an event
whose id it has seen with the same content, and reports one whose id comes back with
different content: that would be a command decided twice, differently. The ids seen
live in ``seen``, any mutable mapping: a dict, or an on-disk store for long logs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import orjson

from banking_app.domain import events as ev
from banking_app.domain.accounts import Account, evolve


def digest(event: ev.Event) -> bytes:
    canonical = orjson.dumps(event.to_dict(), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=8).digest()


@dataclass
class Ledger:
    accounts: dict[str, Account] = field(default_factory=dict)
    deposited: Counter[str] = field(default_factory=Counter)
    withdrawn: Counter[str] = field(default_factory=Counter)
    #: transfer id → (currency, amount debited minus amount credited or refunded); only
    #: non-zero entries are kept: positive is money in flight, negative a credit seen
    #: before its debit.
    in_flight: dict[str, tuple[str, int]] = field(default_factory=dict)
    events_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    commands_with_outcome: int = 0
    violations: list[str] = field(default_factory=list)
    seen: MutableMapping[str, bytes] = field(default_factory=dict)
    _last_seq: dict[str, int] = field(default_factory=dict)

    def apply(self, event: ev.Event) -> bool:
        """Fold one event; returns False for a redelivered copy of one already folded."""
        if not self._first_time(event):
            return False
        self.events_by_type[event.type] += 1
        if event.type in ev.TERMINAL_TYPES:
            self._count_outcome(event)
        self._check_seq(event)
        before = self.accounts.get(event.account_id)
        if before is not None and not before.is_open and event.moves_money:
            self.violations.append(f"{event.type} on closed account {event.account_id}")
        self._move_money(event)
        after = evolve(before, event)
        if after is not None:
            self.accounts[event.account_id] = after
            if after.balance < -after.overdraft_limit:
                self.violations.append(
                    f"account {after.account_id} balance {after.balance} is below "
                    f"-{after.overdraft_limit}"
                )
            if after.in_flight < 0 or after.in_flight_count < 0:
                self.violations.append(
                    f"account {after.account_id} has {after.in_flight} in flight over "
                    f"{after.in_flight_count} transfer(s), below zero: a settlement or "
                    "refund without its debit"
                )
        return True

    def _first_time(self, event: ev.Event) -> bool:
        fingerprint = digest(event)
        known = self.seen.get(event.event_id)
        if known is None:
            self.seen[event.event_id] = fingerprint
            return True
        self.duplicates += 1
        if known != fingerprint:
            self.violations.append(
                f"event {event.event_id} ({event.type} of command {event.command_id}) "
                "was emitted twice with different content"
            )
        return False

    def _count_outcome(self, event: ev.Event) -> None:
        use = ev.outcome_key(event)
        key = f"outcome/{use}"
        if key in self.seen:
            self.violations.append(f"command {use} has more than one outcome")
            return
        self.seen[key] = b"1"
        self.commands_with_outcome += 1

    def _check_seq(self, event: ev.Event) -> None:
        if event.seq is None:
            return
        expected = self._last_seq.get(event.account_id, 0) + 1
        if event.seq != expected:
            self.violations.append(
                f"account {event.account_id} seq {event.seq} where {expected} was next"
            )
        self._last_seq[event.account_id] = max(expected - 1, event.seq)

    def _move_money(self, event: ev.Event) -> None:
        if isinstance(event, ev.MoneyDeposited):
            self.deposited[event.currency] += event.amount
        elif isinstance(event, ev.MoneyWithdrawn):
            self.withdrawn[event.currency] += event.amount
        elif isinstance(event, ev.TransferDebited):
            self._transfer(event.transfer_id, event.currency, event.amount)
        elif isinstance(event, ev.TransferCredited | ev.TransferRefunded):
            self._transfer(event.transfer_id, event.currency, -event.amount)

    def _transfer(self, transfer_id: str, currency: str, change: int) -> None:
        _, amount = self.in_flight.get(transfer_id, (currency, 0))
        if amount + change:
            self.in_flight[transfer_id] = (currency, amount + change)
        else:
            del self.in_flight[transfer_id]

    def money_in_flight(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for currency, amount in self.in_flight.values():
            totals[currency] += amount
        return totals

    def balances(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for account in self.accounts.values():
            totals[account.currency] += account.balance
        return totals

    def check(self, complete: bool = True) -> list[str]:
        """Every violation found, plus the books-balance rule per currency.

        ``complete`` says the whole log was folded: then a transfer credited or refunded
        more than it was debited is a violation, not a partition read ahead of another.
        """
        problems = list(self.violations)
        balances, flight = self.balances(), self.money_in_flight()
        for currency in set(balances) | set(flight) | set(self.deposited) | set(self.withdrawn):
            held = balances[currency] + flight[currency]
            net = self.deposited[currency] - self.withdrawn[currency]
            if held != net:
                problems.append(
                    f"{currency}: balances {balances[currency]} + in flight {flight[currency]} "
                    f"!= deposits - withdrawals {net}"
                )
        if complete:
            problems += [
                f"transfer {transfer_id} credited or refunded {-amount} more than debited"
                for transfer_id, (_, amount) in self.in_flight.items()
                if amount < 0
            ]
        return problems
