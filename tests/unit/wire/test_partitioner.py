"""Our murmur2 partitioner agrees with aiokafka's (the one faust's producers use)."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streams.wire.partitioner import murmur2, partition_for


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


def test_known_kafka_values() -> None:
    # Values from Kafka's own UtilsTest.testMurmur2.
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
    assert partition_for(b"SKU-1", 1) == 0
