"""The order in which one fetch's records are handled (streams.worker.flow.reader.in_time_order)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.flow.reader import InputReader, in_time_order
from streams.worker.flow.transactions import Fenced


@dataclass(frozen=True)
class Record:
    partition: str
    offset: int
    timestamp: int


timestamps = st.lists(st.integers(min_value=0, max_value=50), max_size=15)


def fetch(per_partition: list[list[int]]) -> list[list[Record]]:
    return [[Record(f"t{i}", offset, ts) for offset, ts in enumerate(stamps)]
            for i, stamps in enumerate(per_partition)]


@given(st.lists(timestamps, max_size=5))
def test_every_record_once_and_each_partition_in_offset_order(per_partition: list[list[int]]) -> None:
    records = fetch(per_partition)
    ordered = list(in_time_order(records))
    assert sorted(ordered, key=lambda r: (r.partition, r.offset)) == [r for rs in records for r in rs]
    for partition in records:
        assert [r for r in ordered if r.partition == (partition[0].partition if partition else None)] == partition


@given(st.lists(timestamps.map(sorted), max_size=5))
def test_partitions_with_rising_timestamps_merge_into_time_order(per_partition: list[list[int]]) -> None:
    ordered = list(in_time_order(fetch(per_partition)))
    assert [r.timestamp for r in ordered] == sorted(r.timestamp for r in ordered)


def test_a_receipt_before_a_reservation_on_another_topic_comes_first() -> None:
    reservation, receipt = Record("web.sales", 0, 1_005), Record("wms.restock", 0, 1_000)
    assert list(in_time_order([[reservation], [receipt]])) == [receipt, reservation]


def test_a_partition_fenced_while_its_batch_is_finished_at_a_rebalance_does_not_stop_the_worker() -> None:
    """A worker cut off long enough that another took its partitions: the batch it finishes at the rebalance is
    fenced. That batch committed nothing and is the new owner's to read; the rebalance goes on."""
    class FencedBatcher:
        dropped = 0

        async def flush(self) -> None:
            raise Fenced(2, "Failed to add partitions to transaction: fenced by a newer instance")

        def drop(self) -> None:
            self.dropped += 1

    batcher = FencedBatcher()
    reader = InputReader(set, None, "group", batcher, list, None)  # type: ignore[arg-type]
    asyncio.run(reader.on_revoked())
    assert reader.revoking and batcher.dropped == 1 and reader.assigned == frozenset()
