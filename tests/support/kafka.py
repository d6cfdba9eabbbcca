"""Apache Kafka for the tests: a node or cluster of ``operations.apache_kafka``, running
for as long as a fixture holds it, and stopped (then killed, should it linger) after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar


class Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


S = TypeVar("S", bound=Startable)


def running(instance: S) -> Iterator[S]:
    """``yield from running(node)`` in a fixture: started, yielded, stopped."""
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        instance.kill()
