"""Entry point of ``banking-app``.

Faust reads ``--datadir`` when it configures the app, but this app is configured at
import time (its tables are declared then), before Faust parses the command line. So
the option is read here first and handed over through ``BANKING_DATA_DIR``.

``banking-app worker --role ROLE`` is read here too, and for the same reason: the role
decides which agents, tables and views the app registers when it is imported
(``banking_app.app``). It is taken off the command line and handed over through
``BANKING_ROLE``, which the settings check (``runtime.settings.parse_role``).

The event loop is chosen here too, for the same reason: Faust installs the loop named by
``-L``/``FAUST_LOOP`` when ``faust`` is first imported. Unless told otherwise the bank
runs on uvloop, which the benchmark measured 10-15 % faster than asyncio's own loop for
the same worker (docs/BENCHMARKS.md); ``FAUST_LOOP=aio`` keeps the standard loop.

The memory allocator cannot wait even that long: ``banking-app worker`` first executes
itself again on jemalloc where it is installed (``operations.allocator``), and then
lowers its CPU priority where ``BANKING_NICE`` says so (``operations.priority``).
"""

from __future__ import annotations

import importlib.util
import os
import sys

from banking_app.operations import priority
from banking_app.operations.allocator import execute_as_worker


def datadir_option(argv: list[str]) -> str | None:
    """The value of the global ``--datadir``/``-D`` option, which precedes the command."""
    for index, arg in enumerate(argv):
        if not arg.startswith("-"):
            return None  # reached the subcommand: later options are its own
        if arg.startswith("--datadir="):
            return arg.split("=", 1)[1]
        if arg in ("--datadir", "-D") and index + 1 < len(argv):
            return argv[index + 1]
    return None


def take_role_option(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without ``worker``'s ``--role ROLE`` (or ``--role=ROLE``), and the role."""
    if "worker" not in argv:
        return argv, None
    start = argv.index("worker") + 1
    rest, role = argv[:start], None
    tail = iter(argv[start:])
    for arg in tail:
        if arg == "--role":
            role = next(tail, "")
        elif arg.startswith("--role="):
            role = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, role


def default_loop(environ: dict[str, str] | os._Environ[str], argv: list[str]) -> None:
    """Ask Faust for uvloop when it is installed and no loop was chosen."""
    if "FAUST_LOOP" in environ or "F_LOOP" in environ or "-L" in argv:
        return
    if any(arg == "--loop" or arg.startswith("--loop=") for arg in argv):
        return
    if importlib.util.find_spec("uvloop") is not None:
        environ["FAUST_LOOP"] = "uvloop"


def main() -> None:
    # First: a worker is executed again on jemalloc, before anything else is done.
    execute_as_worker(sys.argv[1:], sys.executable)
    priority.apply(os.environ, sys.argv[1:])
    default_loop(os.environ, sys.argv[1:])
    argv, role = take_role_option(sys.argv[1:])
    if role is not None:
        os.environ["BANKING_ROLE"] = role
        sys.argv[1:] = argv
    datadir = datadir_option(sys.argv[1:])
    if datadir:
        os.environ["BANKING_DATA_DIR"] = datadir
    from banking_app.operations.cli import app

    app.main()
