"""A TCP server that accepts connections and never answers: a worker that hangs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def silent_server(host: str, port: int = 0) -> AsyncIterator[asyncio.Server]:
    """Listening on ``host:port`` (0: a free port) for the block; every connection it
    accepts is held open, unanswered, until the block ends."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, host, port)
    try:
        yield server
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
