"""The bench's memory sampler: parsing ``/metrics``, and keeping the highest RSS seen."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.memory import PeakSampler, parse

TEXT = """# HELP banking_memory_bytes This worker's memory
# TYPE banking_memory_bytes gauge
banking_memory_bytes{part="rss"} 3.0e+08
banking_memory_bytes{part="heap_in_use"} 1.0e+08
banking_memory_bytes{part="heap_free"} 5.0e+07
banking_commands_total{type="DEPOSIT"} 7.0
"""


def test_parse_takes_the_memory_parts_only() -> None:
    assert parse(TEXT) == {"rss": 3e8, "heap_in_use": 1e8, "heap_free": 5e7}


@pytest.fixture()
def metrics_server() -> Iterator[tuple[str, list[int]]]:
    """/metrics answering an RSS from a list, one after the other, then the last."""
    rss = [100, 300, 200]
    served = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            value = rss[min(len(served), len(rss) - 1)]
            served.append(value)
            body = f'banking_memory_bytes{{part="rss"}} {value}\n'.encode()
            body += f'banking_memory_bytes{{part="heap_free"}} {value // 2}\n'.encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()


def test_the_sample_at_the_highest_rss_is_kept(metrics_server: tuple[str, list[int]]) -> None:
    url, served = metrics_server
    with PeakSampler(url, interval=0.01) as sampler:
        while len(served) < 4:
            threading.Event().wait(0.01)
    assert sampler.peak == {"rss": 300, "heap_free": 150}


def test_no_answer_leaves_no_sample() -> None:
    with PeakSampler("http://127.0.0.1:9", interval=0.01) as sampler:
        threading.Event().wait(0.1)
    assert sampler.peak == {}
