"""The wire codec's timestamp text, which every event carries as ``occurred_at``."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from banking_app.runtime.codec import iso_timestamp


def reference(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_known_timestamps() -> None:
    assert iso_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_timestamp(1_700_000_123.456) == "2023-11-14T22:15:23.456Z"
    assert iso_timestamp(1_700_000_123.9999) == "2023-11-14T22:15:23.999Z"  # truncated
    assert iso_timestamp(951_868_799.999) == "2000-02-29T23:59:59.999Z"


@given(st.integers(0, 253_402_300_799_999))  # Kafka's milliseconds, up to year 9999
def test_record_timestamps_read_as_the_standard_library_reads_them(millis: int) -> None:
    assert iso_timestamp(millis / 1000) == reference(millis / 1000)


@given(st.floats(-1e9, 4_102_444_800, allow_nan=False))  # any float from 1938 to 2100
def test_any_float_reads_as_the_standard_library_reads_it(seconds: float) -> None:
    assert iso_timestamp(seconds) == reference(seconds)
