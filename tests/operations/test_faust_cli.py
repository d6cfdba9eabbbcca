"""Faust's own CLI and ``banking-app`` start the same, complete bank.

The agents and views are registered by ``banking_app.app`` (the assembly), not by the
``banking-app`` command's imports, so a Faust user's ``faust -A banking_app.app worker``
gets the command agent too. ``agents`` lists what a worker would run, without a broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
AGENTS = (
    ("event_processor.agent.process_commands", "commands"),
    ("query_service.projections.project_accounts", "events"),
    ("query_service.projections.project_outcomes", "command-outcome-events"),
    ("risk.agent.detect_alerts", "events"),
)


def agents_table(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "300"}
    done = subprocess.run(
        [*command, "agents"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    "command",
    [(str(BIN / "faust"), "-A", "banking_app.app"), (str(BIN / "banking-app"),)],
    ids=["faust -A banking_app.app", "banking-app"],
)
def test_each_cli_lists_every_agent_with_its_docstring(command: tuple[str, ...]) -> None:
    listing = agents_table(*command)
    rows = [line for line in listing.splitlines() if line.startswith("| @")]
    for name, topic in AGENTS:
        row = next((r for r in rows if f"@{name} " in r), None)
        assert row is not None, f"{name} missing from:\n{listing}"
        assert topic in row
        assert "<N/A>" not in row, f"{name} has no docstring"
    assert len(rows) == len(AGENTS)


def test_worker_help_lists_the_role_option() -> None:
    done = subprocess.run(
        [str(BIN / "banking-app"), "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "--role" in line)
    assert "[all|command|processor|query]" in line
    assert "BANKING_ROLE" in done.stdout


def test_a_role_that_reaches_click_is_refused_not_ignored() -> None:
    """Without the launcher, ``--role`` would reach Faust's parser after the app had
    registered every service: the worker must refuse rather than run as ``all``."""
    import click
    from faust.cli.base import cli

    import banking_app.operations.cli  # noqa: F401  (adds the option)

    with pytest.raises(click.BadParameter, match="BANKING_ROLE=query"):
        cli.commands["worker"].make_context("worker", ["--role", "query"])
