"""The command service over HTTP: validate, put the command on ``commands``, and answer.

``202 pending`` once the broker has the command; with ``?wait=true`` the terminal
outcome (``200`` accepted, ``422`` rejected). The ``Idempotency-Key`` header becomes
the command id, so a retried request is applied once and answers the same outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaError
from faust.web import Request, Response

from banking_app.domain.commands import Command
from banking_app.domain.limits import LIMIT_NAMES as LIMITS
from banking_app.runtime import codec
from banking_app.runtime.faust_app import app
from banking_app.runtime.topics import commands_topic
from banking_app.web import lookups, validation
from banking_app.web.base import ApiView
from banking_app.web.problems import Problem

#: How long a POST waits for the broker to acknowledge the command before answering 503.
SEND_TIMEOUT_SECONDS = 10.0


async def send(command: Command) -> None:
    """Put the command on ``commands`` keyed by its account, and wait for the broker's ack.

    Without an ack in time the answer is 503: the command may still arrive later, which
    is why the client should retry with the same Idempotency-Key (applied once either way).
    """

    async def produce() -> None:
        pending = await commands_topic.send(
            key=codec.key(command.account_id), value=codec.dumps(command.to_dict())
        )
        await pending

    try:
        await asyncio.wait_for(produce(), SEND_TIMEOUT_SECONDS)
    except (KafkaError, TimeoutError) as exc:
        raise Problem(
            503,
            f"Kafka did not acknowledge the command ({str(exc) or 'timed out'}); retry with the "
            "same Idempotency-Key",
            slug="broker-unavailable",
            command_id=command.command_id,
        ) from None


async def submit(view: ApiView, request: Request, command: Command, **extra: Any) -> Response:
    wait, timeout = validation.wait_options(request)
    body = {"command_id": command.command_id, **extra}
    headers = {"Location": f"/commands/{command.command_id}"}
    # A key seen before answers with its first outcome, without sending anything. The
    # command side also refuses a key reused for another command (COMMAND_ID_REUSED,
    # bank-wide, filed apart from the first use), so when two uses race, the second one
    # waits below for the key's outcome, finds the first use's, and is answered 422 when
    # it names another account. When the worker holding the outcome is away this is a
    # 504 or 503 and nothing is sent (on a worker without the read model, the command
    # is sent: ``lookups.previous_outcome``); the wait below instead runs out as 202
    # pending.
    previous = await lookups.previous_outcome(command.command_id)
    if previous is not None and previous["status"] != "pending":
        return answer(view, command, previous, body, headers)
    await send(command)
    if not wait:
        return view.json({**body, "status": "pending"}, status=202, headers=headers)
    outcome = await lookups.wait_for_outcome(command.command_id, timeout)
    if outcome is None:
        return view.json({**body, "status": "pending"}, status=202, headers=headers)
    return answer(view, command, outcome, body, headers)


def answer(
    view: ApiView,
    command: Command,
    outcome: dict[str, Any],
    body: dict[str, Any],
    headers: dict[str, str],
) -> Response:
    """200 for an accepted command, 422 for a rejected one (or a key used for another)."""
    accounts = {event["account_id"] for event in outcome["events"]}
    if accounts and command.account_id not in accounts:
        raise Problem(
            422,
            f"Idempotency-Key {command.command_id!r} was already used for a command on "
            f"account(s) {', '.join(sorted(accounts))}; use a new key for a new command",
            slug="idempotency-key-reused",
            **body,
        )
    if outcome["status"] == "rejected":
        details = [event["detail"] for event in outcome["events"] if "detail" in event]
        explained = f" ({details[0]})" if details else ""
        raise Problem(
            422,
            f"{command.type} was rejected: {outcome['reason']}{explained}",
            slug=outcome["reason"].lower().replace("_", "-"),
            **body,
            reason=outcome["reason"],
            events=outcome["events"],
        )
    return view.json({**body, "status": "accepted", "events": outcome["events"]}, headers=headers)


@app.page("/accounts")
class Accounts(ApiView):
    route = "/accounts"

    async def post(self, request: Request) -> Response:
        data = await validation.json_body(
            request,
            {"account_id", "owner", "currency", "overdraft_limit", "expected_version", *LIMITS},
        )
        data.setdefault("account_id", validation.new_account_id(request))
        command = validation.command("CREATE_ACCOUNT", validation.command_id(request), data)
        return await submit(self, request, command, account_id=command.account_id)


class AccountCommand(ApiView):
    """``POST /accounts/{account_id}/<verb>``: the account comes from the path."""

    kind = ""
    fields: frozenset[str] = frozenset({"amount", "expected_version"})
    body_required = True

    async def post(self, request: Request, account_id: str) -> Response:
        data = await validation.json_body(request, set(self.fields), self.body_required)
        data["account_id"] = validation.account_id(account_id, "account_id in the path")
        command = validation.command(self.kind, validation.command_id(request), data)
        return await submit(self, request, command)


@app.page("/accounts/{account_id}/deposits")
class Deposits(AccountCommand):
    route = "/accounts/{account_id}/deposits"
    kind = "DEPOSIT"


@app.page("/accounts/{account_id}/withdrawals")
class Withdrawals(AccountCommand):
    route = "/accounts/{account_id}/withdrawals"
    kind = "WITHDRAW"


@app.page("/accounts/{account_id}/close")
class Close(AccountCommand):
    route = "/accounts/{account_id}/close"
    kind = "CLOSE_ACCOUNT"
    fields = frozenset({"expected_version"})
    body_required = False


@app.page("/accounts/{account_id}/limits")
class Limits(AccountCommand):
    """Replaces both daily limits; one left out, or null, is no limit. A body is required
    (``{}`` lifts both), so that no empty request lifts a limit by accident."""

    route = "/accounts/{account_id}/limits"
    kind = "SET_LIMITS"
    fields = frozenset({*LIMITS, "expected_version"})


@app.page("/transfers")
class Transfers(ApiView):
    route = "/transfers"

    async def post(self, request: Request) -> Response:
        data = await validation.json_body(
            request, {"from_account_id", "to_account_id", "amount", "expected_version"}
        )
        data["account_id"] = validation.account_id(
            data.pop("from_account_id", None), "from_account_id"
        )
        data["to_account_id"] = validation.account_id(data.get("to_account_id"), "to_account_id")
        command = validation.command("TRANSFER_MONEY", validation.command_id(request), data)
        return await submit(self, request, command)
