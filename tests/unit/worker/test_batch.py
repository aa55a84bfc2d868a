"""The batch unit of work: state, then outputs, then input offsets, each awaited; a crash at any step loses no
output and counts no movement twice when the batch comes again."""

from __future__ import annotations

import asyncio

import pytest

from streams.domain import Kind, Movement
from streams.wire.codec import default_codec
from streams.wire.schemas import Schema
from streams.worker.batch import Batcher
from streams.worker.pipeline import Inbound, Pipeline
from streams.worker.table import StockTable, offsets_key
from tests.unit.fakes import Broker, Crash, FakeFaustTable, FakeProducer
from tests.unit.worker.helpers import message, pipeline

CHANGELOG = "u-stock-changelog"


def batch_of(built: Pipeline) -> list[Inbound]:
    """Two receipts of one SKU in two messages of one input partition (offsets 0 and 1)."""
    topics = built.registry
    return [message(topics, [Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)], offset=0),
            message(topics, [Movement(Kind.RECEIPT, "e2", "wms", "SKU-1", "wh-1", 2, 1_001)], offset=1)]


def worker(broker: Broker, crash_at: int | None = None) -> tuple[Batcher, FakeProducer, FakeFaustTable]:
    """A worker as it starts: its table recovered from the changelog on the broker."""
    built = pipeline()
    table = FakeFaustTable.recovered_from(broker, CHANGELOG)
    producer = FakeProducer(broker, crash_at)
    batcher = Batcher(producer, StockTable(table, default_codec()), built, max_batch=100,  # type: ignore[arg-type]
                      wait_s=0.02)
    built.committed = lambda topic, partition: batcher.recorded_offsets(partition).get(topic)
    return batcher, producer, table


def run(batcher: Batcher, inbound: list[Inbound]) -> None:
    """Hand the batch over as the input reader does: only what lies at or after the recorded offsets."""
    for record in inbound:
        if record.offset >= batcher.recorded_offsets(record.partition).get(record.topic, 0):
            batcher.add(record)
    asyncio.run(batcher.flush())


def on_hand(broker: Broker) -> int:
    value, _ = broker.latest(CHANGELOG)[b"SKU-1"]
    record = default_codec().decode_as(value or b"", Schema.SKU_STOCK_STATE)[1]
    return sum(p["on_hand"] for p in record["positions"])


def test_state_then_outputs_then_offsets() -> None:
    broker = Broker()
    batcher, producer, table = worker(broker)
    inbound = batch_of(batcher.pipeline)
    run(batcher, inbound)
    state, outputs, offsets = producer.calls
    assert [(topic, key) for topic, key, _, _ in state] == [(CHANGELOG, b"SKU-1")]
    assert {topic for topic, *_ in outputs} >= {"u.ledger", "u.positions", "u.channel.web.ats"}
    assert CHANGELOG not in {topic for topic, *_ in outputs}
    partition = inbound[0].partition
    assert [(topic, key) for topic, key, _, _ in offsets] == [(CHANGELOG, offsets_key(partition))]
    # The local store holds what the changelog holds, and the next batch starts after offset 1.
    assert table.data[b"SKU-1"] == state[0][2]
    assert batcher.recorded_offsets(partition) == {inbound[0].topic: 2}


@pytest.mark.parametrize(("crash_at", "ledger_copies", "state_rewritten"), [
    (1, 1, True),  # writing the state: nothing reached the broker, the batch is applied afresh
    (2, 1, False),  # delivering the outputs: the state holds the ledger entries, which are sent again
    (3, 2, False),  # recording the offsets: everything is sent again, nothing applied again
], ids=["writing the state", "delivering the outputs", "recording the offsets"])
def test_a_crash_at_any_step_loses_no_output_and_applies_nothing_twice(crash_at: int, ledger_copies: int,
                                                                       state_rewritten: bool) -> None:
    broker = Broker()
    batcher, _, _ = worker(broker, crash_at)
    inbound = batch_of(batcher.pipeline)
    with pytest.raises(Crash):
        run(batcher, inbound)
    restarted, producer, _ = worker(broker)
    run(restarted, inbound)
    assert on_hand(broker) == 7  # 5 + 2, once
    ledger = [default_codec().decode(value or b"")[1]["event_id"] for _, _, value, _ in broker.topic("u.ledger")]
    assert sorted(ledger) == sorted(["e1", "e2"] * ledger_copies)
    assert {key for _, key, _, _ in broker.topic("u.positions")} == {b"SKU-1|wh-1"}
    partition = inbound[0].partition
    changelog_writes = [key for call in producer.calls for topic, key, _, _ in call if topic == CHANGELOG]
    assert changelog_writes == ([b"SKU-1"] if state_rewritten else []) + [offsets_key(partition)]
    assert restarted.recorded_offsets(partition) == {inbound[0].topic: 2}
