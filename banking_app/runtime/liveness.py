"""Is each agent still making progress? ``/health`` says a worker is unhealthy when one
is not.

A worker can be up, in its group and answering HTTP while an agent makes no progress:
an input that fails every attempt while the take is retried, a partition waiting on a
record that never comes, a projection stuck behind a broker that refuses its writes.
Its lag then grows and nothing else shows it. An agent is stalled when records wait
for it (lag above zero) and it has handled no take for ``stall_seconds``: an idle agent
with nothing to read is not stalled, however long it waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from banking_app.runtime.settings import settings


@dataclass(frozen=True)
class Stall:
    topic: str
    lag: int
    seconds: float


@dataclass
class Liveness:
    stall_seconds: float
    #: topic → when a take of it was last handled (or when it was first watched).
    progress: dict[str, float] = field(default_factory=dict)

    def handled(self, topic: str, now: float) -> None:
        """A take of ``topic`` was handled and acknowledged."""
        self.progress[topic] = now

    def stalled(self, lags: Mapping[str, int], now: float) -> list[Stall]:
        """The topics with records waiting whose agent handled nothing for too long.

        A topic seen for the first time starts its clock now: a worker that has just
        recovered has handled nothing yet, and is not stalled for that."""
        found = []
        for topic, lag in sorted(lags.items()):
            since = now - self.progress.setdefault(topic, now)
            if lag > 0 and since >= self.stall_seconds:
                found.append(Stall(topic, lag, since))
            elif lag <= 0:
                self.progress[topic] = now  # caught up: idle, not stalled
        return found


#: This worker's agents (``streams`` tells it of each handled take; ``/health`` asks).
watch = Liveness(settings.stall_seconds)
