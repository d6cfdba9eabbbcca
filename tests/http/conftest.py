"""Fixtures of the HTTP API tests (helpers are in ``api_client``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from api_client import HTTP_TIMEOUT, Api

from support.cluster import Worker


@pytest.fixture()
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT + 30)
    async with aiohttp.ClientSession(timeout=timeout) as running:
        yield running


@pytest.fixture()
async def api(worker: Worker, session: aiohttp.ClientSession) -> Api:
    return Api(session, worker.url)
