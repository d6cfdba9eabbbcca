"""The names of the bank's tables: their changelog topics are ``banking-app-<name>-changelog``.

Here, apart from ``runtime.topics``, because the partition assignor
(``runtime.assignor``) needs them while the app is still being configured.
"""

from __future__ import annotations

ACCOUNTS_TABLE = "accounts"
COMMAND_OFFSETS_TABLE = "command-offsets"
COMMAND_CLAIMS_TABLE = "command-claims"
ACCOUNT_VIEWS_TABLE = "account-views"
TRANSACTIONS_TABLE = "transactions"
COMMAND_OUTCOMES_TABLE = "command-outcomes"
RISK_STATE_TABLE = "risk-state"
ALERTS_TABLE = "account-alerts"
