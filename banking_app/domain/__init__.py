"""The pure domain core: no Faust, no Kafka, no clock, no randomness.

Everything here is deterministic so that reprocessing an input against the same
state yields byte-identical events (see ``docs/at-least-once.md``).
"""

from banking_app.domain.accounts import Account, AccountStatus, evolve
from banking_app.domain.commands import (
    CloseAccount,
    Command,
    CreateAccount,
    CreditTransfer,
    Deposit,
    RefundTransfer,
    SetLimits,
    SettleTransfer,
    TransferMoney,
    Withdraw,
    parse_command,
)
from banking_app.domain.decide import Decision, decide
from banking_app.domain.errors import DomainError, MalformedCommand, MalformedLeg, Reason
from banking_app.domain.events import Event, event_from_dict

__all__ = [
    "Account",
    "AccountStatus",
    "CloseAccount",
    "Command",
    "CreateAccount",
    "CreditTransfer",
    "Decision",
    "Deposit",
    "DomainError",
    "Event",
    "MalformedCommand",
    "MalformedLeg",
    "Reason",
    "RefundTransfer",
    "SetLimits",
    "SettleTransfer",
    "TransferMoney",
    "Withdraw",
    "decide",
    "event_from_dict",
    "evolve",
    "parse_command",
]
