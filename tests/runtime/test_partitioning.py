"""The partitioner: every part of the bank must pick the partition Kafka's clients pick.

``banking_app.runtime.topics.murmur2`` is a faster copy of the Java client's hash; producers
outside the bank (aiokafka, the Java client) key commands with the original, so the
two must agree on every input, or commands would be re-keyed and lookups misrouted.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from banking_app.runtime.topics import murmur2, partition_for


@given(st.binary(max_size=64))
def test_murmur2_is_the_kafka_clients_hash(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_the_default_partitioner_sends_it(key: str, partitions: int) -> None:
    expected = (aiokafka_murmur2(key.encode()) & 0x7FFFFFFF) % partitions
    assert partition_for(key.encode(), partitions) == expected
