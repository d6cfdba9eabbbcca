"""An account's events written as a story: what happened, at which minute of the day.

Events are built the way the command side writes them (ids, seq, ``occurred_at``), so
the rules see nothing a test could not meet on the ``events`` topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from banking_app.domain import events as ev
from banking_app.domain.events import event_id_for
from banking_app.risk.rules import iso, millis

#: The day the stories happen on: minute 0 is its 09:00 UTC.
T0 = millis("2026-03-02T09:00:00.000Z")


def at(minute: float) -> str:
    """``occurred_at`` of a minute of the story (fractions allowed, negatives too)."""
    return iso(T0 + round(minute * 60_000))


@dataclass
class Story:
    """One account's events, numbered as the command side numbers them."""

    account_id: str
    seq: int = 1  # AccountCreated was seq 1
    made: int = 0
    events: list[ev.Event] = field(default_factory=list)

    def _ids(self, kind: str) -> tuple[str, str]:
        self.made += 1
        command_id = f"{self.account_id}-{kind}-{self.made}"
        return event_id_for(command_id), command_id

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _keep(self, event: ev.Event) -> ev.Event:
        self.events.append(event)
        return event

    def deposit(self, amount: int, minute: float) -> ev.Event:
        event_id, command_id = self._ids("dep")
        return self._keep(
            ev.MoneyDeposited(
                event_id, command_id, self.account_id, at(minute), self._next(), amount, 0, "EUR"
            )
        )

    def withdraw(self, amount: int, minute: float) -> ev.Event:
        event_id, command_id = self._ids("wd")
        return self._keep(
            ev.MoneyWithdrawn(
                event_id, command_id, self.account_id, at(minute), self._next(), amount, 0, "EUR"
            )
        )

    def send(self, to: str, amount: int, minute: float) -> ev.Event:
        event_id, command_id = self._ids("tr")
        return self._keep(
            ev.TransferDebited(
                event_id,
                command_id,
                self.account_id,
                at(minute),
                self._next(),
                command_id,
                to,
                amount,
                0,
                "EUR",
            )
        )

    def receive(self, source: str, amount: int, minute: float) -> ev.Event:
        event_id, command_id = self._ids("in")
        return self._keep(
            ev.TransferCredited(
                event_id,
                command_id,
                self.account_id,
                at(minute),
                self._next(),
                command_id,
                source,
                amount,
                0,
                "EUR",
            )
        )

    def refused(
        self, minute: float, reason: str = "INSUFFICIENT_FUNDS", command_type: str = "WITHDRAW"
    ) -> ev.Event:
        event_id, command_id = self._ids("no")
        return self._keep(
            ev.CommandRejected(
                event_id,
                command_id,
                self.account_id,
                at(minute),
                None,
                reason,
                "refused",
                command_type,
                {"type": command_type},
            )
        )
