"""In-order delivery (``banking_app.runtime.delivery``): whatever a fetcher throws at it, the
agents see each partition's records without a skip, and everything eventually."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from banking_app.runtime.delivery import PATIENCE, Action, Cursors, Verdict

TP = ("commands", 0)
END = 40


@dataclass
class Fetcher:
    """A partition's log ``[start, END)`` read from ``position`` as Kafka's consumer reads
    it (a seek below the log's start lands on the start), feeding ``Cursors`` the way
    ``banking_app.runtime.transport`` does. ``lossy`` seeks are lost, as one can be under load."""

    start: int
    position: int
    cursors: Cursors = field(default_factory=Cursors)
    now: float = 0.0
    lossy: bool = False
    delivered: list[int] = field(default_factory=list)

    def seek(self, offset: int) -> None:
        if not self.lossy:
            self.position = max(offset, self.start)

    def hand_over(self, offset: int) -> None:
        verdict = self.cursors.on_record(TP, offset, self.now)
        if verdict.action is Action.DELIVER:
            self.delivered.append(offset)
        elif verdict.action is Action.SEEK:
            assert verdict.offset is not None
            self.cursors.seeking_back(TP, self.now)
            self.seek(verdict.offset)

    def fetch(self) -> None:
        if self.position < END:
            offset = self.position
            self.position += 1
            self.hand_over(offset)

    def fetch_unseen(self) -> None:
        """A record read while the flow is suspended: the position moves, nothing is
        handed over."""
        self.position = min(self.position + 1, END)

    def watchdog(self) -> None:
        for tp, owed in self.cursors.stalled(self.now):
            if self.position <= owed:
                self.cursors.idle(tp, self.now)
                continue
            self.cursors.log_starts_at(tp, self.start)
            owed = self.cursors.owed(tp)
            assert owed is not None
            self.cursors.seeking_back(tp, self.now)
            self.seek(owed)


def assert_no_skip(delivered: list[int], first: int, hidden: frozenset[int] = frozenset()) -> None:
    """No record is delivered before every record below it was (those below ``first``,
    and ``hidden`` offsets that hold no readable record, count as delivered): the
    agents' at-most-once checks rely on it."""
    seen = set(range(first)) | hidden
    for offset in delivered:
        assert set(range(offset)) <= seen, (offset, sorted(set(range(offset)) - seen))
        seen.add(offset)


steps = st.lists(
    st.one_of(
        st.just(("fetch", 0)),
        st.tuples(st.just("stale"), st.integers(0, END - 1)),
        st.tuples(st.just("wait"), st.sampled_from([0.5, PATIENCE + 1])),
        st.tuples(st.just("reseek"), st.integers(0, END - 1)),
        st.just(("unseen", 0)),
        st.just(("lossy", 1)),
        st.just(("lossy", 0)),
    ),
    max_size=120,
)


def play(
    fetcher: Fetcher,
    steps: list[tuple[str, float]],
    committed: int,
    hidden: frozenset[int] = frozenset(),
) -> None:
    """Seek to ``committed``, run the steps, then fetch (and watch) until the end."""
    fetcher.cursors.sought(TP, committed, fetcher.now)
    for step, value in steps:
        if step == "fetch":
            fetcher.fetch()
        elif step == "stale":
            # A record fetched before the last seek, handed over late: any real record.
            if int(value) not in hidden:
                fetcher.hand_over(int(value))
        elif step == "wait":
            fetcher.now += value
            fetcher.watchdog()
        elif step == "unseen":
            fetcher.fetch_unseen()
        elif step == "lossy":
            fetcher.lossy = bool(value)
        else:
            # Recovery seeks back to a committed offset, at or below everything owed.
            owed = fetcher.cursors.owed(TP)
            back = min(int(value), owed if owed is not None else END)
            fetcher.cursors.sought(TP, back, fetcher.now)
            fetcher.seek(back)
    fetcher.lossy = False
    for _ in range(10 * END):
        fetcher.now += 1.0
        fetcher.watchdog()
        fetcher.fetch()


@given(steps=steps, committed=st.integers(0, END - 1))
def test_records_reach_the_agents_in_order_and_all_of_them(
    steps: list[tuple[str, float]], committed: int
) -> None:
    fetcher = Fetcher(start=0, position=committed)
    play(fetcher, steps, committed)

    assert_no_skip(fetcher.delivered, committed)
    assert set(range(committed, END)) <= set(fetcher.delivered)


def test_a_record_ahead_of_the_owed_offset_is_skipped_and_read_again() -> None:
    cursors = Cursors()
    cursors.sought(TP, 10, now=0.0)

    assert cursors.on_record(TP, 10, now=0.0) == Verdict(Action.DELIVER)
    assert cursors.owed(TP) == 11
    # 11 never came: 12 is not delivered, the partition is read again from 11.
    assert cursors.on_record(TP, 12, now=0.0) == Verdict(Action.SEEK, 11)
    cursors.seeking_back(TP, now=0.0)
    # Stale records still in the pipeline are skipped quietly.
    assert cursors.on_record(TP, 13, now=0.0) == Verdict(Action.SKIP)
    assert cursors.owed(TP) == 11
    assert cursors.on_record(TP, 11, now=1.0) == Verdict(Action.DELIVER)
    assert cursors.on_record(TP, 12, now=1.0) == Verdict(Action.DELIVER)
    assert cursors.owed(TP) == 13


def test_a_redelivered_record_is_delivered_again_and_owes_nothing_new() -> None:
    cursors = Cursors()
    cursors.sought(TP, 5, now=0.0)
    for offset in (5, 6, 7):
        cursors.on_record(TP, offset, now=0.0)

    assert cursors.on_record(TP, 6, now=0.0) == Verdict(Action.DELIVER)
    assert cursors.owed(TP) == 8


def test_an_owed_offset_that_has_not_moved_for_the_patience_is_stalled() -> None:
    cursors = Cursors(patience=5.0)
    cursors.sought(TP, 3, now=10.0)
    cursors.on_record(TP, 3, now=12.0)

    assert cursors.stalled(now=16.9) == []
    assert cursors.stalled(now=17.0) == [(TP, 4)]
    # The consumer had read nothing past 4: an idle partition, nothing late.
    cursors.idle(TP, now=17.0)
    assert cursors.stalled(now=21.0) == []


def test_records_deleted_by_retention_are_given_up_with_their_offsets_named() -> None:
    cursors = Cursors()
    cursors.sought(TP, 3, now=0.0)

    assert cursors.log_starts_at(TP, 2) is None
    assert cursors.log_starts_at(TP, 3) is None
    assert cursors.owed(TP) == 3
    assert cursors.log_starts_at(TP, 20) == range(3, 20)
    assert cursors.owed(TP) == 20
    assert cursors.on_record(TP, 20, now=0.0) == Verdict(Action.DELIVER)


def test_nothing_is_owed_for_a_partition_after_it_is_revoked() -> None:
    cursors = Cursors()
    cursors.sought(TP, 9, now=0.0)
    cursors.forget([TP])

    assert cursors.owed(TP) is None
    assert cursors.stalled(now=100.0) == []


def test_no_record_is_delivered_before_the_seek_says_where_a_partition_starts() -> None:
    cursors = Cursors()
    cursors.forget([TP])  # newly assigned
    # A record far ahead (a leg the worker just sent itself) comes before the seek: it
    # is not taken for the start, or everything below it would look applied.
    assert cursors.on_record(TP, 30, now=0.0) == Verdict(Action.SKIP)
    cursors.sought(TP, None, now=0.0)  # no offset known: still nothing owed
    assert cursors.on_record(TP, 30, now=0.0) == Verdict(Action.SKIP)
    cursors.sought(TP, 17, now=0.0)
    assert cursors.on_record(TP, 30, now=0.0) == Verdict(Action.SEEK, 17)
    cursors.seeking_back(TP, now=0.0)
    assert cursors.on_record(TP, 17, now=0.0) == Verdict(Action.DELIVER)


def test_a_lost_seek_back_is_made_again_and_nothing_is_skipped() -> None:
    fetcher = Fetcher(start=0, position=0)
    fetcher.cursors.sought(TP, 0, fetcher.now)
    for _ in range(10):
        fetcher.fetch()
    # Recovery seeks back to the committed offset 4, but the seek is lost under load.
    fetcher.lossy = True
    fetcher.cursors.sought(TP, 4, fetcher.now)
    fetcher.seek(4)
    while fetcher.position < END:
        fetcher.fetch()  # 10 is ahead of 4: sought back; that seek is lost too
    assert fetcher.delivered == list(range(10))

    fetcher.lossy = False
    fetcher.now += PATIENCE
    fetcher.watchdog()
    while fetcher.position < END:
        fetcher.fetch()

    assert fetcher.delivered == [*range(10), *range(4, END)]


def test_records_read_while_suspended_are_read_again_though_nothing_follows() -> None:
    fetcher = Fetcher(start=0, position=0)
    fetcher.cursors.sought(TP, 0, fetcher.now)
    for _ in range(5):
        fetcher.fetch()
    # A rebalance begins: the rest is read but not handed over, and no record follows.
    while fetcher.position < END:
        fetcher.fetch_unseen()
    assert fetcher.delivered == list(range(5))

    fetcher.now += PATIENCE
    fetcher.watchdog()
    while fetcher.position < END:
        fetcher.fetch()

    assert fetcher.delivered == list(range(END))


@dataclass
class Agent:
    """An agent behind ``Fetcher``: handed-over records wait in its queue, are admitted
    into a take, and the take is handled or let go (abandoned, or the agent crashed)."""

    fetcher: Fetcher
    queue: list[int] = field(default_factory=list)
    take: list[int] = field(default_factory=list)
    handled: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fetcher.delivered = self.queue  # the fetcher delivers into the queue

    def admit(self) -> None:
        if self.queue:
            offset = self.queue.pop(0)
            if self.fetcher.cursors.admit(TP, offset, self.fetcher.now):
                self.take.append(offset)

    def handle(self) -> None:
        self.handled += self.take
        self.take = []

    def let_go(self, offsets: list[int]) -> None:
        if offsets:
            self.fetcher.cursors.rewind(TP, min(offsets), self.fetcher.now)

    def abandon(self) -> None:
        self.let_go(self.take)
        self.take = []

    def crash(self) -> None:
        """Faust restarts the agent: its take and what the stream had queued are gone."""
        self.let_go(self.take + self.queue)
        self.take, self.queue[:] = [], []


agent_steps = st.lists(
    st.one_of(
        st.just("fetch"),
        st.just("admit"),
        st.just("handle"),
        st.just("abandon"),
        st.just("crash"),
        st.just("wait"),
    ),
    max_size=150,
)


@settings(max_examples=500)
@given(steps=agent_steps, committed=st.integers(0, END - 1))
def test_an_agent_never_takes_a_record_behind_one_it_let_go(
    steps: list[str], committed: int
) -> None:
    fetcher = Fetcher(start=0, position=committed)
    fetcher.cursors.sought(TP, committed, fetcher.now)
    agent = Agent(fetcher)
    for step in steps:
        if step == "wait":
            fetcher.now += PATIENCE + 1
            fetcher.watchdog()
        else:
            getattr(fetcher if step == "fetch" else agent, step)()
    for _ in range(10 * END):
        fetcher.now += 1.0
        fetcher.watchdog()
        fetcher.fetch()
        while agent.queue:
            agent.admit()
        agent.handle()

    # What an agent handles is what reaches the accounts' rows: no skip, none missing.
    assert_no_skip(agent.handled, committed)
    assert set(range(committed, END)) <= set(agent.handled)


def test_a_take_let_go_is_taken_again_before_the_records_behind_it() -> None:
    cursors = Cursors()
    cursors.sought(TP, 10, now=0.0)
    for offset in range(10, 15):
        assert cursors.on_record(TP, offset, now=0.0) == Verdict(Action.DELIVER)
    assert all(cursors.admit(TP, offset, now=0.0) for offset in (10, 11, 12))
    # The take 10..12 is abandoned; 13 and 14 were already on their way to the agent.
    cursors.rewind(TP, 10, now=0.0)

    assert not cursors.admit(TP, 13, now=0.0)
    assert not cursors.admit(TP, 14, now=0.0)
    assert cursors.owed(TP) == 10
    # The next record handed over makes the consumer read again from 10.
    assert cursors.on_record(TP, 15, now=0.0) == Verdict(Action.SEEK, 10)
    cursors.seeking_back(TP, now=0.0)
    for offset in range(10, 15):
        assert cursors.on_record(TP, offset, now=1.0) == Verdict(Action.DELIVER)
        assert cursors.admit(TP, offset, now=1.0)


@dataclass
class TransactionalLog(Fetcher):
    """A log whose ``hidden`` offsets hold no readable record (transaction markers,
    aborted records under read_committed): the fetcher steps over them, as Kafka's
    consumer does, and the probe answers as ``ReadableProbe`` does."""

    hidden: frozenset[int] = frozenset()

    def fetch(self) -> None:
        while self.position < END and self.position in self.hidden:
            self.position += 1
        super().fetch()

    def probe(self) -> None:
        owed = self.cursors.owed(TP)
        if owed is None:
            return
        readable = [o for o in range(max(owed, self.start), END) if o not in self.hidden]
        found = readable[0] if readable else (END if owed < END else None)
        if found is not None and found > owed:
            self.cursors.invisible(TP, owed, found, self.now)

    def hand_over(self, offset: int) -> None:
        super().hand_over(offset)
        if self.delivered[-1:] != [offset]:
            self.probe()  # what InOrderConsumer does on any record it did not deliver

    def watchdog(self) -> None:
        self.probe()
        super().watchdog()


@given(
    steps=steps,
    committed=st.integers(0, END - 1),
    hidden=st.frozensets(st.integers(0, END - 1), max_size=END // 2),
)
def test_offsets_without_a_readable_record_never_stall_the_partition(
    steps: list[tuple[str, float]], committed: int, hidden: frozenset[int]
) -> None:
    fetcher = TransactionalLog(start=0, position=committed, hidden=hidden)
    play(fetcher, steps, committed, hidden)

    readable = set(range(committed, END)) - hidden
    delivered = [o for o in fetcher.delivered if o >= committed]
    assert_no_skip(delivered, committed, hidden)
    assert readable <= set(delivered)
    assert fetcher.cursors.owed(TP) == END  # nothing left waited for


def test_a_jump_over_a_transaction_marker_is_stepped_over_not_sought_forever() -> None:
    cursors = Cursors()
    cursors.sought(TP, 0, now=0.0)
    assert cursors.on_record(TP, 0, now=0.0) == Verdict(Action.DELIVER)
    assert cursors.admit(TP, 0, now=0.0)
    # Offset 1 is a commit marker: the consumer hands over 2.
    assert cursors.on_record(TP, 2, now=0.0) == Verdict(Action.SEEK, 1)
    cursors.seeking_back(TP, now=0.0)
    # The probe finds the first readable record from 1 at 2.
    assert cursors.invisible(TP, 1, 2, now=0.0)
    assert cursors.owed(TP) == 2
    assert cursors.on_record(TP, 2, now=0.0) == Verdict(Action.DELIVER)
    assert cursors.admit(TP, 2, now=0.0)  # the take cursor steps over the marker too
    # A stale answer (the cursor has moved on) changes nothing.
    assert not cursors.invisible(TP, 1, 2, now=0.0)
    assert cursors.owed(TP) == 3
