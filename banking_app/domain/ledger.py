"""The bank's books, folded from the event log alone, and the invariants they must satisfy.

Used by the property tests and by ``banking-app replay``. It dedupes by ``event_id``
(a reprocessed command re-emits identical events) and keeps only O(accounts +
transfers in flight + command ids) in memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from banking_app.domain import events as ev
from banking_app.domain.accounts import Account, evolve


@dataclass
class Ledger:
    accounts: dict[str, Account] = field(default_factory=dict)
    deposited: Counter[str] = field(default_factory=Counter)
    withdrawn: Counter[str] = field(default_factory=Counter)
    #: transfer id → (currency, amount) for transfers debited but not yet credited or refunded.
    in_flight: dict[str, tuple[str, int]] = field(default_factory=dict)
    events_by_type: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _last_seq: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def apply(self, event: ev.Event) -> bool:
        """Fold one event; returns False for a duplicate (same event id seen before)."""
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        self.events_by_type[event.type] += 1
        if event.type in ev.TERMINAL_TYPES:
            self.outcomes[event.command_id] += 1
            if self.outcomes[event.command_id] == 2:
                self.violations.append(f"command {event.command_id} has more than one outcome")
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
        return True

    def _check_seq(self, event: ev.Event) -> None:
        if event.seq is None:
            return
        expected = self._last_seq[event.account_id] + 1
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
            self.in_flight[event.transfer_id] = (event.currency, event.amount)
        elif (
            isinstance(event, ev.TransferCredited | ev.TransferRefunded)
            and self.in_flight.pop(event.transfer_id, None) is None
        ):
            self.violations.append(f"{event.type} of unknown transfer {event.transfer_id}")

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

    def check(self) -> list[str]:
        """Every violation found so far, plus the books-balance rule per currency."""
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
        return problems
