"""Entry point of ``banking-app``.

Faust reads ``--datadir`` when it configures the app, but this app is configured at
import time (its tables are declared then), before Faust parses the command line. So
the option is read here first and handed over through ``BANKING_DATA_DIR``.
"""

from __future__ import annotations

import os
import sys


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


def main() -> None:
    datadir = datadir_option(sys.argv[1:])
    if datadir:
        os.environ["BANKING_DATA_DIR"] = datadir
    from banking_app.cli import app

    app.main()
