"""The worker's memory by part, sampled from ``/metrics`` while a phase runs.

A peak RSS alone does not say whose it is. ``banking_memory_bytes`` splits it into
glibc's heap in use, glibc's heap free but held, and RocksDB's budget
(``banking_app.runtime.memory``); the sample kept is the one at the highest RSS seen.
"""

from __future__ import annotations

import threading
import urllib.request
from typing import Any

#: Seconds between samples.
INTERVAL = 2.0
PREFIX = 'banking_memory_bytes{part="'


def parse(text: str) -> dict[str, float]:
    """``{part: bytes}`` from the Prometheus text of ``/metrics``."""
    parts = {}
    for line in text.splitlines():
        if line.startswith(PREFIX):
            name, _, value = line[len(PREFIX) :].partition('"} ')
            parts[name] = float(value)
    return parts


class PeakSampler:
    """Polls ``url/metrics`` on a thread during a ``with`` block; ``peak`` is the sample
    with the highest ``rss`` (empty when none answered)."""

    def __init__(self, url: str, interval: float = INTERVAL) -> None:
        self.url, self.interval = f"{url}/metrics", interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    sample = parse(response.read().decode())
            except OSError:
                continue  # a busy worker: the next sample
            if sample.get("rss", 0) > self.peak.get("rss", 0):
                self.peak = sample

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
