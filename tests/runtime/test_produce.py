"""Batching a take's records: every record reaches the broker as it was given.

``produce`` appends a partition's records to aiokafka batches itself. Read back, each
batch must hold the records in order with their keys, values and timestamps, whatever
the timestamps are: -1 is a timestamp any producer may set, and a re-keyed command or a
leg keeps its input's (README: ``occurred_at`` is the command record's timestamp).
"""

from __future__ import annotations

import asyncio

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given
from hypothesis import strategies as st

from banking_app.runtime.produce import Outgoing, batches

TIMESTAMPS = st.one_of(
    st.sampled_from([-0.001, 0.0, 0.001, 1_700_000_000.0]),
    st.integers(min_value=-1, max_value=2**40).map(lambda ms: ms / 1000),
)


def read_back(records: list[Outgoing], batch_size: int) -> list[tuple[bytes, bytes, int]]:
    async def built() -> list[tuple[bytearray, int]]:
        made = batches(lambda: BatchBuilder(batch_size, 0), records)
        return [(batch._build(), size) async for batch, size in made]

    read = []
    for buffer, size in asyncio.run(built()):
        batch = list(DefaultRecordBatch(bytes(buffer)))
        assert len(batch) == size
        read += [(r.key, r.value, r.timestamp) for r in batch]
    return read


def test_a_record_stamped_minus_one_before_another_keeps_its_timestamp() -> None:
    """aiokafka's C builder took the first -1 for "no record yet" and restamped it with
    the next record's timestamp: a re-keyed command stamped -1 got the broker's clock."""
    records = [
        Outgoing("commands", b"a", b"1", 0, -0.001),
        Outgoing("commands", b"b", b"2", 0, 1_700_000_000.0),
    ]
    assert [stamp for *_, stamp in read_back(records, 16384)] == [-1, 1_700_000_000_000]


@given(
    timestamps=st.lists(TIMESTAMPS, min_size=1, max_size=40),
    batch_size=st.sampled_from([64, 300, 16384]),
)
def test_every_record_is_read_back_in_order_with_its_timestamp(
    timestamps: list[float], batch_size: int
) -> None:
    records = [
        Outgoing("commands", f"k{i}".encode(), f"v{i}".encode(), 0, stamp)
        for i, stamp in enumerate(timestamps)
    ]
    expected = [(r.key, r.value, int(r.timestamp * 1000)) for r in records]
    assert read_back(records, batch_size) == expected


def test_records_stamped_minus_one_share_a_batch() -> None:
    """The fix costs a batch only where the builder needs one: -1 after -1 is kept."""
    records = [Outgoing("commands", b"k", b"v", 0, -0.001)] * 3
    records.append(Outgoing("commands", b"k", b"v", 0, 5.0))
    records.append(Outgoing("commands", b"k", b"v", 0, -0.001))

    async def sizes() -> list[int]:
        return [size async for _, size in batches(lambda: BatchBuilder(16384, 0), records)]

    assert asyncio.run(sizes()) == [3, 2]
