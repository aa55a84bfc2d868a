"""The batch unit of work: per table partition, state, outputs and offsets in one transaction; a crash before the
commit applies the batch afresh; a part that cannot be written is isolated; a fenced partition changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from streams.domain import Kind, Movement
from streams.wire.codec import default_codec
from streams.wire.schemas import Schema
from streams.worker.flow.batch import MAX_BATCH_BYTES, Batcher
from streams.worker.flow.transactions import Fenced
from streams.worker.processing.messages import Inbound
from streams.worker.processing.outputs import OutputRecord
from streams.worker.processing.pipeline import Pipeline
from streams.worker.state.keys import offsets_key
from streams.worker.state.stores import MemoryStore
from streams.worker.state.table import StockTable
from tests.unit.fakes import Broker, Crash, FakeTransactions
from tests.unit.worker.helpers import PARTITIONS, message, pipeline

CHANGELOG = "u-stock-changelog"


def receipt(event: str, sku: str, units: int, at: int) -> Movement:
    return Movement(Kind.RECEIPT, event, "wms", sku, "wh-1", units, at)


def batch_of(built: Pipeline) -> list[Inbound]:
    """Two receipts of one SKU in two messages of one input partition (offsets 0 and 1)."""
    topics = built.registry
    return [message(topics, [receipt("e1", "SKU-1", 5, 1_000)], offset=0),
            message(topics, [receipt("e2", "SKU-1", 2, 1_001)], offset=1)]


def worker(broker: Broker, crash_at: int | None = None, refused: str | None = None
           ) -> tuple[Batcher, FakeTransactions, MemoryStore]:
    """A worker as it starts: its table recovered from the changelog on the broker. `refused`: the broker refuses
    every record of that topic whose key starts with b"SKU-2"."""

    def refuse(record: OutputRecord) -> bool:
        return refused is not None and record[0] == refused and record[1].startswith(b"SKU-2")

    built = pipeline()
    table = MemoryStore({key: value for key, (value, _) in broker.latest(CHANGELOG).items() if value})
    transactions = FakeTransactions(broker, range(PARTITIONS), crash_at, refuse)
    batcher = Batcher(transactions, StockTable(lambda: table, CHANGELOG, PARTITIONS, default_codec()),  # type: ignore[arg-type]
                      built, max_batch=100, wait_s=0.02)
    return batcher, transactions, table


def run(batcher: Batcher, inbound: list[Inbound]) -> None:
    """Hand the batch over as the input reader does: only what lies at or after the recorded offsets."""
    for record in inbound:
        if record.offset >= batcher.recorded_offsets(record.partition).get(record.topic, 0):
            batcher.add(record)
    asyncio.run(batcher.flush())


def state(broker: Broker, sku: str) -> dict[str, int]:
    """A SKU's on-hand per location, as the changelog on the broker holds it."""
    value, _ = broker.latest(CHANGELOG)[sku.encode()]
    record = default_codec().decode_as(value or b"", Schema.SKU_HEAD)[1]
    return {p["location"]: p["on_hand"] for p in record["positions"]}


def ledgered(broker: Broker) -> list[str]:
    return sorted(default_codec().decode(value or b"")[1]["event_id"] for _, _, value, _ in broker.topic("u.ledger"))


def test_state_outputs_and_offsets_are_one_transaction() -> None:
    broker = Broker()
    batcher, transactions, table = worker(broker)
    inbound = batch_of(batcher.pipeline)
    run(batcher, inbound)
    [(partition, records)] = transactions.calls
    assert partition == inbound[0].partition
    topics = [topic for topic, *_ in records]
    assert {"u.ledger", "u.positions", "u.channel.web.ats"} <= set(topics)
    written = [key for topic, key, _, _ in records if topic == CHANGELOG]
    assert written[0] == b"SKU-1" and written[-1] == offsets_key(partition)
    assert {key.split(b"\x01")[1][:2] for key in written[1:-1]} == {b"e:", b"x:", b"d:", b"s:"}  # its history
    # The local store holds what the changelog holds, and the next batch starts after offset 1.
    assert table.data[b"SKU-1"] == broker.latest(CHANGELOG)[b"SKU-1"][0]
    assert batcher.recorded_offsets(partition) == {inbound[0].topic: 2}


def test_a_crash_before_the_commit_applies_the_batch_afresh_and_once() -> None:
    broker = Broker()
    batcher, _, table = worker(broker, crash_at=1)
    inbound = batch_of(batcher.pipeline)
    with pytest.raises(Crash):
        run(batcher, inbound)
    assert broker.records == [] and table.data == {}  # nothing visible, nothing kept locally
    restarted, _, _ = worker(broker)
    run(restarted, inbound)
    assert state(broker, "SKU-1") == {"wh-1": 7}  # 5 + 2, once
    assert ledgered(broker) == ["e1", "e2"]  # exactly once: no entry is sent again


def test_a_message_whose_outputs_the_broker_refuses_is_dead_lettered_alone() -> None:
    broker = Broker()
    batcher, _, table = worker(broker, refused="u.ledger")
    topics = batcher.pipeline.registry
    # Four messages of one partition; the third carries a SKU whose ledger entries the broker refuses.
    skus = [sku for sku in (f"SKU-{n}" for n in range(1, 400))
            if message(topics, [receipt("x", sku, 1, 1)]).partition == 0]
    good = [sku for sku in skus if not sku.startswith("SKU-2")][:3]
    bad = next(sku for sku in skus if sku.startswith("SKU-2"))
    inbound = [message(topics, [receipt(f"e{i}", sku, 1 + i, 1_000 + i)], offset=i)
               for i, sku in enumerate([good[0], good[1], bad, good[2]])]
    run(batcher, inbound)
    assert ledgered(broker) == ["e0", "e1", "e3"]
    assert [state(broker, sku) for sku in good] == [{"wh-1": 1}, {"wh-1": 2}, {"wh-1": 4}]
    assert bad.encode() not in table.data
    [dead] = [default_codec().decode(value or b"")[1] for _, _, value, _ in broker.topic("u.deadletter")]
    assert (dead["reason"], dead["source_offset"]) == ("unwritable", 2)
    assert "u.ledger: refused" in dead["detail"]
    assert batcher.recorded_offsets(0) == {inbound[0].topic: 4}


def test_a_message_whose_dead_letter_is_refused_too_is_stepped_over() -> None:
    broker = Broker()
    batcher, _, _ = worker(broker, refused="u.ledger")
    batcher.transactions.refused = lambda record: record[0] in ("u.ledger", "u.deadletter")  # type: ignore[attr-defined]
    inbound = batch_of(batcher.pipeline)
    run(batcher, inbound)  # every ledger entry is refused: both messages are stepped over
    assert broker.topic("u.ledger") == [] and broker.topic("u.deadletter") == []
    assert batcher.recorded_offsets(inbound[0].partition) == {inbound[0].topic: 2}


def test_a_fenced_partition_changes_nothing_here() -> None:
    broker = Broker()
    batcher, transactions, table = worker(broker)
    inbound = batch_of(batcher.pipeline)
    del transactions.producers[inbound[0].partition]  # another worker took the partition over
    with pytest.raises(Fenced):
        run(batcher, inbound)
    assert broker.records == [] and table.data == {}
    assert batcher.recorded_offsets(inbound[0].partition) == {}


def test_batches_grow_while_they_close_full_and_shrink_once_one_closes_on_time() -> None:
    broker = Broker()
    batcher, _, _ = worker(broker)
    topics = batcher.pipeline.registry
    offset = 0

    def fill(count: int, size: int = 0) -> None:
        nonlocal offset
        for _ in range(count):
            inbound = message(topics, [receipt(f"e{offset}", "SKU-1", 1, 1_000 + offset)], offset=offset)
            batcher.add(Inbound(inbound.topic, inbound.partition, inbound.offset, inbound.key,
                                (inbound.value or b"") + b"\0" * size, inbound.timestamp_ms))
            offset += 1

    limits = []
    for _ in range(6):  # a backlog: every batch takes all it may
        fill(batcher.room())
        assert batcher.full()
        asyncio.run(batcher.flush())
        limits.append(batcher.limit)
    assert limits == [200, 400, 800, 1000, 1000, 1000]  # doubling, up to 10 x max_batch
    fill(3)  # caught up: a batch closes on time with what came
    asyncio.run(batcher.flush())
    assert batcher.limit == 100
    fill(4, size=MAX_BATCH_BYTES // 4)  # large messages close a batch by its bytes, whatever their number
    assert batcher.full() and batcher.room() == 96
    asyncio.run(batcher.flush())
    assert state(broker, "SKU-1") == {"wh-1": offset - 4}  # every message applied (the large ones are dead letters)
