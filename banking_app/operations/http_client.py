"""A small HTTP client of the bank's API, used by the operator commands of ``banking-app``.

The commands go through the worker's HTTP API rather than straight to Kafka, so they
get exactly the validation, idempotency and outcome the API gives everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from banking_app.runtime.settings import settings


@dataclass
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


class BankClient:
    def __init__(self, url: str, token: str = settings.api_token, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        headers = dict(self.headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as session,
            session.request(
                method, self.url + path, json=json, params=params, headers=headers
            ) as response,
        ):
            body = await response.json(content_type=None)
            return Answer(response.status, body if isinstance(body, dict) else {})

    async def command(
        self, path: str, body: dict[str, Any] | None, idempotency_key: str | None = None
    ) -> Answer:
        """POST a command and wait for its outcome (``?wait=true``)."""
        return await self._request(
            "POST", path, json=body, params={"wait": "true"}, idempotency_key=idempotency_key
        )

    async def account(self, account_id: str) -> Answer:
        return await self._request("GET", f"/accounts/{quote(account_id, safe='')}")

    async def history(self, account_id: str, limit: int, before_seq: int | None = None) -> Answer:
        params = {"limit": str(limit)}
        if before_seq is not None:
            params["before_seq"] = str(before_seq)
        return await self._request(
            "GET", f"/accounts/{quote(account_id, safe='')}/transactions", params=params
        )

    async def outcome(self, command_id: str) -> Answer:
        return await self._request("GET", f"/commands/{quote(command_id, safe='')}")
