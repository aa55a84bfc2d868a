"""The worker's batch logic without a broker: routing, the ledger outbox after a crash, dead letters."""

from __future__ import annotations

from streams.domain import Kind, Movement
from streams.partitioning import sku_partition
from streams.pipeline import Inbound, Pipeline
from streams.records import movement_to_record
from streams.serde import default_codec
from streams.settings import load_settings
from streams.topics import TopicRegistry
from tests.unit.domain.helpers import NETWORK, NOW

PARTITIONS = 4


class Store:
    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}

    def get(self, sku: str, partition: int) -> bytes | None:
        found = self.data.get(sku)
        return found[0] if found else None

    def put(self, sku: str, value: bytes, partition: int) -> None:
        assert partition == sku_partition(sku, PARTITIONS)
        self.data[sku] = (value, partition)


class Outbox:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, int | None]] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    def to(self, topic: str) -> list[tuple[str, bytes, bytes | None, int | None]]:
        return [r for r in self.records if r[0] == topic]


def setup() -> tuple[Pipeline, TopicRegistry]:
    registry = TopicRegistry(load_settings(partitions=PARTITIONS, topic_prefix="u"))
    pipeline = Pipeline(registry, default_codec())
    pipeline.set_network(NETWORK, 3)
    return pipeline, registry


def message(registry: TopicRegistry, movements: list[Movement], offset: int = 0, partition: int | None = None,
            side: str = "restock") -> Inbound:
    codec = default_codec()
    first = movements[0]
    value = codec.encode("stocksync.Movement", movement_to_record(first)) if len(movements) == 1 else \
        codec.encode("stocksync.MovementBatch", {"movements": [movement_to_record(m) for m in movements]})
    topic = (registry.restock if side == "restock" else registry.sales)(first.channel).name
    return Inbound(topic, sku_partition(first.sku, PARTITIONS) if partition is None else partition, offset,
                   first.sku.encode(), value)


def test_a_movement_on_the_wrong_partition_is_sent_on_not_applied() -> None:
    pipeline, registry = setup()
    m = Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)
    wrong = (sku_partition("SKU-1", PARTITIONS) + 1) % PARTITIONS
    store, outbox = Store(), Outbox()
    result = pipeline.handle([message(registry, [m], partition=wrong)], store, outbox, NOW)
    assert result.rerouted == 1 and store.data == {}
    [(topic, key, _, partition)] = outbox.records
    assert (topic, key, partition) == (registry.restock("wms").name, b"SKU-1", None)


def test_outputs_lost_after_the_state_was_written_are_sent_again() -> None:
    pipeline, registry = setup()
    batch = [message(registry, [Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)])]
    store = Store()
    first = Outbox()
    pipeline.handle(batch, store, first, NOW)
    # The worker died after writing the state and before its outputs reached the broker; the input comes again.
    again = Outbox()
    pipeline.handle(batch, store, again, NOW)
    assert again.to(registry.ledger.name) == first.to(registry.ledger.name)
    assert {r[1] for r in again.to(registry.positions.name)} == {b"SKU-1|wh-1"}
    assert again.to(registry.ats("web").name) == first.to(registry.ats("web").name)


def test_ledger_outbox_is_dropped_once_the_input_offset_is_committed() -> None:
    pipeline, registry = setup()
    committed: dict[tuple[str, int], int] = {}
    pipeline.committed = lambda topic, partition: committed.get((topic, partition))
    store = Store()
    first = message(registry, [Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)], offset=7)
    pipeline.handle([first], store, Outbox(), NOW)
    committed[(first.topic, first.partition)] = 8
    pipeline.handle([message(registry, [Movement(Kind.RECEIPT, "e2", "wms", "SKU-1", "wh-1", 1, 1_001)],
                             offset=8)], store, Outbox(), NOW)
    record = default_codec().decode(store.data["SKU-1"][0])[1]
    assert set(record["unconfirmed_ledger"]) == {"wms:e2"}


def test_a_sales_movement_on_the_restock_topic_is_dead_lettered() -> None:
    pipeline, registry = setup()
    sale = Movement(Kind.SALE, "e1", "wms", "SKU-1", "wh-1", 1, 1_000)
    outbox = Outbox()
    result = pipeline.handle([message(registry, [sale])], Store(), outbox, NOW)
    assert result.dead_letters == 1
    [(_, _, value, _)] = outbox.to(registry.deadletter.name)
    letter = default_codec().decode(value or b"")[1]
    assert (letter["reason"], letter["channel"]) == ("wrong_topic", "wms")


def test_one_table_write_per_sku_per_batch() -> None:
    pipeline, registry = setup()
    movements = [Movement(Kind.RECEIPT, f"e{i}", "wms", "SKU-1", "wh-1", 1, 1_000 + i) for i in range(20)]
    writes: list[str] = []
    store = Store()
    original = store.put
    store.put = lambda sku, value, partition: (writes.append(sku), original(sku, value, partition))  # type: ignore[method-assign]
    pipeline.handle([message(registry, movements[:10]), message(registry, movements[10:], offset=1)], store,
                    Outbox(), NOW)
    assert writes == ["SKU-1"]


def test_a_coalescing_channel_gets_at_most_one_update_per_window_but_zero_at_once() -> None:
    from dataclasses import replace

    from streams.domain import Network

    pipeline, registry = setup()
    market = replace(NETWORK.channels["market"], coalesce_ms=1_000)
    pipeline.set_network(Network(NETWORK.locations, {**NETWORK.channels, "market": market}), 4)
    store, outbox = Store(), Outbox()
    feed = registry.ats("market").name
    codec = default_codec()

    def receipt(n: int, units: int, now: int) -> None:
        m = Movement(Kind.RECEIPT, f"r{n}", "wms", "SKU-1", "wh-1", units, NOW)
        pipeline.handle([message(registry, [m], offset=n)], store, outbox, now=now)

    def published() -> list[int]:
        return [codec.decode(r[2])[1]["ats"] for r in outbox.to(feed) if r[2]]

    receipt(0, 10, NOW)
    receipt(1, 5, NOW + 100)
    receipt(2, 5, NOW + 200)
    assert published() == [9]  # the first at once, the next two held back
    assert pipeline.release_held_ats(outbox, NOW + 999) == 0 and published() == [9]
    assert pipeline.release_held_ats(outbox, NOW + 1_000) == 1 and published() == [9, 19]  # the latest only
    web = [codec.decode(r[2])[1]["ats"] for r in outbox.to(registry.ats("web").name)]
    assert web == [8, 13, 18]  # a channel without coalescing sees every change
    receipt(3, 1, NOW + 1_100)  # held ...
    theft = Movement(Kind.ADJUSTMENT, "a4", "wms", "SKU-1", "wh-1", -21, NOW, reason="theft")
    pipeline.handle([message(registry, [theft], offset=4)], store, outbox, now=NOW + 1_200)
    assert published() == [9, 19, 0]  # ... but a drop to zero goes out at once and replaces it
    assert pipeline.release_held_ats(outbox, NOW + 5_000) == 0
