"""Query load at a fixed rate: ``GET /accounts/{id}`` for random ids, open loop, sent
to each of the comma-separated worker URLs in turn.

Runs as its own process (so it does not share the measuring process's event loop) until
SIGTERM, then prints its latencies as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time

import aiohttp


async def main(urls: str, rate: float, count: int, prefix: str) -> None:
    workers = urls.split(",")
    latencies: list[float] = []
    errors = 0
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str, account: str) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.get(f"{url}/accounts/{account}") as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - started)

        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        sent = 0
        print("ready", flush=True, file=sys.stderr)
        while not stop.is_set():
            due = start + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            url = workers[sent % len(workers)]
            task = asyncio.create_task(one(url, f"{prefix}{random.randrange(count):07d}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    print(json.dumps({"latencies": latencies, "errors": errors, "sent": sent}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
