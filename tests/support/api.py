"""The HTTP API client of the HTTP tests (``tests/http/api_client.py``), for the tests
of other directories.

pytest puts ``tests/http`` on ``sys.path`` only when it collects a test there, so a
test elsewhere (``tests/faults``) imports the client through this module.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HTTP_TESTS = str(Path(__file__).resolve().parents[1] / "http")
if _HTTP_TESTS not in sys.path:
    sys.path.append(_HTTP_TESTS)

from api_client import (  # noqa: E402
    HTTP_TIMEOUT,
    Api,
    Reply,
    eventually,
    key,
    new_id,
    running_workers,
    view_state,
)

__all__ = [
    "HTTP_TIMEOUT",
    "Api",
    "Reply",
    "eventually",
    "key",
    "new_id",
    "running_workers",
    "view_state",
]
