"""``banking-app``: Faust's command line for this app, plus the app's own commands.

``banking-app worker`` is the Faust worker; ``banking-app dev`` runs a broker and a
worker together; ``banking-app create-topics`` prepares a cluster; the operator commands
(``open-account``, ``deposit``, ``withdraw``, ``transfer``, ``close``, ``show``,
``history``, ``outcome``) talk to a worker's HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from faust.cli import AppCommand, argument, option

from banking_app.app import app
from banking_app.domain.limits import LIMIT_NAMES
from banking_app.operations import (
    audit,
    local_dev,
    operator_commands,
    topic_admin,
)
from banking_app.operations.http_client import BankClient
from banking_app.runtime.settings import ROLES, settings


def _role_seen_by_click(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:  # the launcher takes it first; here only without the launcher
        raise click.BadParameter(
            "is read by the banking-app launcher before the app is imported; "
            f"elsewhere set BANKING_ROLE={value} instead",
            ctx=ctx,
            param=param,
        )


def document_role_option() -> None:
    """List ``--role`` in ``banking-app worker --help``.

    The launcher takes ``--role`` off the command line before Faust parses it
    (``operations.launcher``), so Faust's worker command, built by faust-streaming
    0.15.3's ``AppCommand.as_click_command`` (``faust/cli/base.py``), never knew it
    and left it out of its help. The option added here to that click command only
    documents it: it reaches click only when the launcher did not run, and then it
    refuses, naming ``BANKING_ROLE``, rather than start a worker of the wrong role.
    """
    from faust.cli import worker as _registers_the_worker_command  # noqa: F401
    from faust.cli.base import cli

    command = cli.commands["worker"]
    if any(param.name == "role" for param in command.params):
        return
    command.params.append(
        click.Option(
            ["--role"],
            type=click.Choice(ROLES),
            default=None,
            expose_value=False,
            callback=_role_seen_by_click,
            help=(
                "Which of the bank's services to run: all (default), command, processor, "
                "query. Env: BANKING_ROLE."
            ),
        )
    )


document_role_option()


class StandaloneCommand(AppCommand):
    """An app command that runs on its own event loop instead of inside a Faust worker.

    ``dev`` supervises child processes and must stop them on Ctrl-C or SIGTERM; a Faust
    worker around it would close the loop before its clean-up had run. The operator
    commands are HTTP clients and need no worker either. The handler's return value is
    the exit code.
    """

    abstract = True  # a base for commands, not a command of its own

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        async def supervised() -> int | None:
            task = asyncio.current_task()
            assert task is not None
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
            return await self.run(*self.args, *args, **{**self.kwargs, **kwargs})

        code: int | None = 0
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            code = asyncio.run(supervised())
        raise SystemExit(code or 0)


@app.command(
    option(
        "--broker-port",
        type=int,
        default=None,
        show_default=False,
        help=(
            "Port of the broker on localhost [default: 9092; Apache Kafka keeps the "
            "port of its first start in the data directory]."
        ),
    ),
    option(
        "--web-port",
        type=int,
        default=settings.web_port,
        show_default=True,
        help="Port of the worker's HTTP views.",
    ),
    option(
        "--data-dir",
        default=local_dev.DEV_DIR,
        show_default=True,
        help=(
            "Where Apache Kafka's logs, the worker's tables and the saga-leg key are kept "
            "across runs (not used with Tansu). Env: BANKING_DEV_DIR."
        ),
    ),
    option(
        "--broker",
        "broker_kind",
        type=click.Choice(["auto", "kafka", "tansu"]),
        default="auto",
        show_default=True,
        help="auto: Apache Kafka when Java 17+ is on PATH, else Tansu (memory only).",
    ),
    option(
        "--loglevel",
        "worker_loglevel",
        default="info",
        show_default=True,
        help="Worker log level: crit|error|warn|info|debug.",
    ),
    option(
        "--roles",
        default=None,
        help=(
            "The workers to run, by role, comma-separated: all, command, processor, query "
            "(e.g. processor,query). Web ports count up from --web-port. [default: all]"
        ),
    ),
    option("--workers", type=int, default=None, help="Run N workers of role all."),
    base=StandaloneCommand,
)
async def dev(
    self: object,
    broker_port: int | None,
    web_port: int,
    data_dir: str,
    broker_kind: str,
    worker_loglevel: str,
    roles: str | None,
    workers: int | None,
) -> int:
    """Run a broker and the bank's workers until Ctrl-C; with Apache Kafka, the data is kept.

    A newcomer's accounts should survive a restart of ``dev`` as they would in
    production, so Apache Kafka runs when Java allows it. Tansu, the fallback, keeps its
    topics in memory only, and a worker data directory that outlived it would hold
    changelog offsets the next broker never had (Faust's ConsistencyError).
    """
    try:
        chosen = local_dev.layout(roles, workers)
    except local_dev.LayoutError as exc:
        print(f"dev: {exc}", file=sys.stderr, flush=True)
        return 2
    return await local_dev.run(
        broker_port, web_port, Path(data_dir), broker_kind, worker_loglevel, chosen
    )


@app.command(
    option("--partitions", type=int, default=settings.partitions, show_default=True),
    option(
        "--replication-factor", type=int, default=settings.replication_factor, show_default=True
    ),
)
async def create_topics(self: object, partitions: int, replication_factor: int) -> None:
    """Create every topic the bank uses, with its configs (existing ones are kept)."""
    for line in await topic_admin.create_topics(settings, partitions, replication_factor):
        print(line)


URL = option(
    "--url",
    default=os.environ.get("BANKING_URL", f"http://localhost:{settings.web_port}"),
    show_default=True,
    help="A worker's HTTP API (any worker will do). Env: BANKING_URL.",
)
KEY = option("--idempotency-key", default=None, help="Command id; a retry with it applies once.")
EXPECTED = option(
    "--expected-version",
    type=int,
    default=None,
    help="Reject unless the account is at this version.",
)


LIMIT_HELP = "Minor units per UTC day; left out: no limit."


def _limits(withdrawal: int | None, transfer: int | None) -> dict[str, int]:
    """The daily limits given on the command line, as the API names them."""
    given = zip(LIMIT_NAMES, (withdrawal, transfer), strict=True)
    return {name: value for name, value in given if value is not None}


def _with(body: dict[str, Any], expected_version: int | None) -> dict[str, Any]:
    return body if expected_version is None else {**body, "expected_version": expected_version}


@app.command(
    URL,
    KEY,
    EXPECTED,
    option("--owner", required=True),
    option("--currency", required=True, help="ISO 4217 code, e.g. EUR."),
    option("--account-id", default=None, help="Chosen id; generated when omitted."),
    option("--overdraft-limit", type=int, default=0, show_default=True, help="Minor units."),
    option("--daily-withdrawal-limit", type=int, default=None, help=LIMIT_HELP),
    option("--daily-transfer-limit", type=int, default=None, help=LIMIT_HELP),
    base=StandaloneCommand,
)
async def open_account(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    owner: str,
    currency: str,
    account_id: str | None,
    overdraft_limit: int,
    daily_withdrawal_limit: int | None,
    daily_transfer_limit: int | None,
) -> int:
    """Open an account."""
    body: dict[str, Any] = {
        "owner": owner,
        "currency": currency,
        "overdraft_limit": overdraft_limit,
        **_limits(daily_withdrawal_limit, daily_transfer_limit),
    }
    if account_id:
        body["account_id"] = account_id
    answer = await BankClient(url).command(
        "/accounts", _with(body, expected_version), idempotency_key
    )
    return operator_commands.report_command(answer)


async def _money(
    url: str,
    key: str | None,
    expected_version: int | None,
    account_id: str,
    amount: int,
    suffix: str,
) -> int:
    body = _with({"amount": amount}, expected_version)
    answer = await BankClient(url).command(f"/accounts/{account_id}/{suffix}", body, key)
    return operator_commands.report_command(answer)


@app.command(
    URL, KEY, EXPECTED, argument("account_id"), argument("amount", type=int), base=StandaloneCommand
)
async def deposit(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    account_id: str,
    amount: int,
) -> int:
    """Deposit AMOUNT minor units (cents) into ACCOUNT_ID."""
    return await _money(url, idempotency_key, expected_version, account_id, amount, "deposits")


@app.command(
    URL, KEY, EXPECTED, argument("account_id"), argument("amount", type=int), base=StandaloneCommand
)
async def withdraw(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    account_id: str,
    amount: int,
) -> int:
    """Withdraw AMOUNT minor units (cents) from ACCOUNT_ID."""
    return await _money(url, idempotency_key, expected_version, account_id, amount, "withdrawals")


@app.command(
    URL,
    KEY,
    EXPECTED,
    argument("from_account_id"),
    argument("to_account_id"),
    argument("amount", type=int),
    base=StandaloneCommand,
)
async def transfer(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    from_account_id: str,
    to_account_id: str,
    amount: int,
) -> int:
    """Transfer AMOUNT minor units between two accounts."""
    body = {"from_account_id": from_account_id, "to_account_id": to_account_id, "amount": amount}
    answer = await BankClient(url).command(
        "/transfers", _with(body, expected_version), idempotency_key
    )
    return operator_commands.report_command(answer)


@app.command(URL, KEY, EXPECTED, argument("account_id"), base=StandaloneCommand)
async def close(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    account_id: str,
) -> int:
    """Close an account (its balance must be zero, with nothing in flight)."""
    answer = await BankClient(url).command(
        f"/accounts/{account_id}/close", _with({}, expected_version), idempotency_key
    )
    return operator_commands.report_command(answer)


@app.command(
    URL,
    KEY,
    EXPECTED,
    argument("account_id"),
    option("--daily-withdrawal-limit", type=int, default=None, help=LIMIT_HELP),
    option("--daily-transfer-limit", type=int, default=None, help=LIMIT_HELP),
    base=StandaloneCommand,
)
async def set_limits(
    self: object,
    url: str,
    idempotency_key: str | None,
    expected_version: int | None,
    account_id: str,
    daily_withdrawal_limit: int | None,
    daily_transfer_limit: int | None,
) -> int:
    """Set ACCOUNT_ID's daily limits (both: one left out is lifted)."""
    body = _limits(daily_withdrawal_limit, daily_transfer_limit)
    answer = await BankClient(url).command(
        f"/accounts/{account_id}/limits", _with(body, expected_version), idempotency_key
    )
    return operator_commands.report_command(answer)


@app.command(URL, argument("account_id"), base=StandaloneCommand)
async def show(self: object, url: str, account_id: str) -> int:
    """Show an account: owner, balance, status, version."""
    return operator_commands.report_account(await BankClient(url).account(account_id))


@app.command(
    URL,
    argument("account_id"),
    option("--limit", type=int, default=50, show_default=True, help="Lines per page."),
    option("--all", "everything", is_flag=True, help="Every line back to the account's opening."),
    base=StandaloneCommand,
)
async def history(self: object, url: str, account_id: str, limit: int, everything: bool) -> int:
    """Show an account's history, newest first: every movement with its balance after."""
    client = BankClient(url)
    answer = await client.history(account_id, limit)
    code = operator_commands.report_history(answer, header=True)
    while everything and answer.ok and answer.body.get("next_before_seq"):
        answer = await client.history(account_id, limit, answer.body["next_before_seq"])
        code = operator_commands.report_history(answer, header=False)
    return code


@app.command(URL, argument("command_id"), base=StandaloneCommand)
async def outcome(self: object, url: str, command_id: str) -> int:
    """Show what became of a command, with the events it produced."""
    return operator_commands.report_outcome(await BankClient(url).outcome(command_id))


@app.command(
    option(
        "--verify",
        is_flag=True,
        help="Also compare the fold with the command side's table and the read model.",
    ),
    base=StandaloneCommand,
)
async def replay(self: object, verify: bool) -> int:
    """Fold the events topic from the beginning and audit the books (exit 1 on problems)."""
    from banking_app.event_processor.tables import accounts_table
    from banking_app.query_service.projections import account_views_table

    bootstrap = settings.bootstrap_servers
    with audit.spill_store() as seen:
        report = await audit.replay(bootstrap, seen)
        if verify:
            rows = await audit.latest_values(
                bootstrap, accounts_table.changelog_topic.get_topic_name()
            )
            views = await audit.latest_values(
                bootstrap, account_views_table.changelog_topic.get_topic_name()
            )
            report.differences = audit.compare(report.ledger, rows, views)
        print(report.render())
        return 1 if report.problems else 0


@app.command(base=StandaloneCommand)
async def rebuild_projections(self: object) -> int:
    """With the workers stopped, rebuild the read model from the events topic alone."""
    # Here, not at the top: it imports the query service's tables, which a worker of
    # another role must not register (banking_app.app).
    from banking_app.operations import rebuild

    for step in await rebuild.rebuild(settings.bootstrap_servers):
        print(step)
    print("start the workers: they load the rebuilt read model from its changelogs")
    return 0
