"""Readable output for the operator commands, and their exit codes.

Exit codes: 0 accepted or found, 1 bad request or not found, 3 rejected by the bank,
4 still pending when the wait ran out.
"""

from __future__ import annotations

from typing import Any

from banking_app.operations.http_client import Answer

EXIT_OK, EXIT_ERROR, EXIT_REJECTED, EXIT_PENDING = 0, 1, 3, 4


def money(amount: int, currency: str = "") -> str:
    """Minor units, grouped for reading; the API never converts to major units."""
    return f"{amount:,}".replace(",", "_") + (f" {currency}" if currency else "")


def describe_event(event: dict[str, Any]) -> str:
    kind, account = event["type"], event["account_id"]
    seq = f"#{event['seq']} " if "seq" in event else ""
    parts = [f"  {seq}{kind} on {account}"]
    if "amount" in event:
        parts.append(f"amount {money(event['amount'], event.get('currency', ''))}")
    if "balance" in event:
        parts.append(f"balance after {money(event['balance'], event.get('currency', ''))}")
    for field in ("to_account_id", "from_account_id"):
        if field in event:
            parts.append(f"{field.split('_')[0]} {event[field]}")
    if "reason" in event:
        parts.append(f"reason {event['reason']}")
    return ", ".join(parts)


def _error(answer: Answer) -> int:
    body = answer.body
    print(f"error {answer.status}: {body.get('detail') or body.get('title') or body}")
    return EXIT_ERROR


def report_command(answer: Answer) -> int:
    body = answer.body
    if answer.status == 422:
        print(f"rejected: {body.get('reason')} (command {body.get('command_id')})")
        print(f"  {body.get('detail')}")
        for event in body.get("events", []):
            print(describe_event(event))
        return EXIT_REJECTED
    if not answer.ok:
        return _error(answer)
    account = f", account {body['account_id']}" if "account_id" in body else ""
    print(f"{body['status']}: command {body['command_id']}{account}")
    for event in body.get("events", []):
        print(describe_event(event))
    return EXIT_OK if body["status"] == "accepted" else EXIT_PENDING


#: How ``show`` labels each daily limit.
DAILY_LIMITS = (("withdraw", "daily_withdrawal_limit"), ("transfer", "daily_transfer_limit"))


def report_account(answer: Answer) -> int:
    if not answer.ok:
        return _error(answer)
    a = answer.body
    print(f"account   {a['account_id']} ({a['status']})")
    print(f"owner     {a['owner']}")
    print(f"balance   {money(a['balance'], a['currency'])} (minor units)")
    print(f"overdraft {money(a['overdraft_limit'], a['currency'])}")
    for label, name in DAILY_LIMITS:
        limit = a.get(name)
        shown = "no limit" if limit is None else f"{money(limit, a['currency'])} a day"
        print(f"{label:<9} {shown}")
    print(f"in flight {money(a['in_flight'], a['currency'])}")
    print(f"version   {a['version']}  (opened {a['created_at']}, last change {a['updated_at']})")
    return EXIT_OK


def report_history(answer: Answer, header: bool) -> int:
    if not answer.ok:
        return _error(answer)
    if header:
        print(
            f"{'seq':>5}  {'occurred_at':<24}  {'type':<17} {'amount':>14} {'balance':>14}"
            "  counterparty / command"
        )
    for item in answer.body["items"]:
        other = item.get("counterparty_account_id", "")
        note = f"{other} " if other else ""
        note += f"[{item['command_id']}]" + (f" {item['reason']}" if "reason" in item else "")
        print(
            f"{item['seq']:>5}  {item['occurred_at']:<24}  {item['type']:<17} "
            f"{money(item['amount']):>14} {money(item['balance']):>14}  {note}"
        )
    return EXIT_OK


def report_outcome(answer: Answer) -> int:
    if not answer.ok:
        return _error(answer)
    body = answer.body
    reason = f" ({body['reason']})" if body.get("reason") else ""
    print(f"{body['status']}{reason}: command {body['command_id']}")
    for event in body["events"]:
        print(describe_event(event))
    return EXIT_OK
