"""The worker's batch logic without a broker: routing, movements sent again, dead letters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from streams.domain import Kind, Movement, Network, Position, Reservation, SkuStock, channel_ats
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import default_codec
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_to_record, position_record
from streams.wire.schemas import Schema
from streams.worker.processing import decode, emit
from streams.worker.processing.expiry import EXPIRY_RESEND_MS
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.outputs import ProducerOutbox
from streams.worker.processing.pipeline import Pipeline
from tests.unit.domain.helpers import NETWORK, NOW
from tests.unit.fakes import Outbox, Store
from tests.unit.worker.helpers import PARTITIONS, message, pipeline


def setup() -> tuple[Pipeline, TopicRegistry]:
    built = pipeline()
    return built, built.registry


def test_a_movement_on_the_wrong_partition_is_sent_on_not_applied() -> None:
    built, registry = setup()
    m = Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)
    wrong = (sku_partition("SKU-1", PARTITIONS) + 1) % PARTITIONS
    store, outbox = Store(PARTITIONS), Outbox()
    result = built.handle([message(registry, [m], partition=wrong)], store, outbox, NOW)
    assert result.rerouted == 1 and store.data == {}
    [(topic, key, _, partition)] = outbox.records
    assert (topic, key, partition) == (registry.restock("wms").name, b"SKU-1", None)


def test_a_movement_sent_again_adds_no_ledger_entry_and_publishes_its_figures_again() -> None:
    built, registry = setup()
    batch = [message(registry, [Movement(Kind.RECEIPT, "e1", "wms", "SKU-1", "wh-1", 5, 1_000)])]
    store = Store(PARTITIONS)
    first = Outbox()
    built.handle(batch, store, first, NOW)
    assert len(first.to(registry.ledger.name)) == 1
    # The channel sent it again: the state remembers it, and its ledger entry was committed with that state.
    again = Outbox()
    built.handle(batch, store, again, NOW)
    assert again.to(registry.ledger.name) == []
    assert store.writes == ["SKU-1"]  # the state is not written again
    assert {r[1] for r in again.to(registry.positions.name)} == {b"SKU-1|wh-1"}  # versioned: harmless
    assert again.to(registry.ats("web").name) == first.to(registry.ats("web").name)


def test_a_state_change_comes_on_either_topic_and_a_plain_adjustment_only_on_the_restock_topic() -> None:
    built, registry = setup()
    store, outbox = Store(PARTITIONS), Outbox()
    returned = Movement(Kind.RETURN, "rt1", "wms", "SKU-1", "wh-1", 3, 1_000, disposition="inspect")
    released = Movement(Kind.ADJUSTMENT, "qc1", "wms", "SKU-1", "wh-1", 2, 1_001, state="quality_control",
                        to_state="sellable")
    quarantined = Movement(Kind.ADJUSTMENT, "q1", "wms", "SKU-1", "wh-1", 1, 1_002, to_state="quarantine")
    plain = Movement(Kind.ADJUSTMENT, "a1", "wms", "SKU-1", "wh-1", -1, 1_003, reason="damage")
    result = built.handle([message(registry, [returned, released, plain], side="sales"),
                           message(registry, [quarantined], offset=1)], store, outbox, NOW)
    assert [(d["reason"], d["movement_index"]) for d in letters(outbox, registry)] == [("wrong_topic", 2)]
    assert result.dead_letters == 1
    figures = {record[1]: default_codec().decode(record[2] or b"")[1]["figures"]
               for record in outbox.to(registry.positions.name)}[b"SKU-1|wh-1"]
    assert (figures["on_hand"], figures["quality_control"], figures["quarantine"]) == (1, 1, 1)


def test_a_sales_movement_on_the_restock_topic_is_dead_lettered() -> None:
    built, registry = setup()
    sale = Movement(Kind.SALE, "e1", "wms", "SKU-1", "wh-1", 1, 1_000)
    outbox = Outbox()
    result = built.handle([message(registry, [sale])], Store(PARTITIONS), outbox, NOW)
    assert result.dead_letters == 1
    [(_, _, value, _)] = outbox.to(registry.deadletter.name)
    letter = default_codec().decode(value or b"")[1]
    assert (letter["reason"], letter["channel"]) == ("wrong_topic", "wms")


def test_one_table_write_per_sku_per_batch() -> None:
    built, registry = setup()
    movements = [Movement(Kind.RECEIPT, f"e{i}", "wms", "SKU-1", "wh-1", 1, 1_000 + i) for i in range(20)]
    store = Store(PARTITIONS)
    built.handle([message(registry, movements[:10]), message(registry, movements[10:], offset=1)], store,
                    Outbox(), NOW)
    assert store.writes == ["SKU-1"]


def test_a_coalescing_channel_gets_at_most_one_update_per_window_but_zero_at_once() -> None:
    market = replace(NETWORK.channels["market"], coalesce_ms=1_000)
    built, registry = setup()
    built.network.adopt(Network(NETWORK.locations, {**NETWORK.channels, "market": market}), 4)
    store, outbox = Store(PARTITIONS), Outbox()
    feed = registry.ats("market").name
    codec = default_codec()

    def receipt(n: int, units: int, now: int) -> None:
        m = Movement(Kind.RECEIPT, f"r{n}", "wms", "SKU-1", "wh-1", units, NOW)
        built.handle([message(registry, [m], offset=n)], store, outbox, now=now)

    def published() -> list[int]:
        return [codec.decode(value)[1]["ats"] for _, _, value, _ in outbox.to(feed) if value]

    receipt(0, 10, NOW)
    receipt(1, 5, NOW + 100)
    receipt(2, 5, NOW + 200)
    assert published() == [9]  # the first at once, the next two held back
    assert built.ats.release_held(outbox, NOW + 999) == 0 and published() == [9]
    assert built.ats.release_held(outbox, NOW + 1_000) == 1 and published() == [9, 19]  # the latest only
    web = [codec.decode(value)[1]["ats"] for _, _, value, _ in outbox.to(registry.ats("web").name) if value]
    assert web == [8, 13, 18]  # a channel without coalescing sees every change
    receipt(3, 1, NOW + 1_100)  # held ...
    theft = Movement(Kind.ADJUSTMENT, "a4", "wms", "SKU-1", "wh-1", -21, NOW, reason="theft")
    built.handle([message(registry, [theft], offset=4)], store, outbox, now=NOW + 1_200)
    assert published() == [9, 19, 0]  # ... but a drop to zero goes out at once and replaces it
    assert built.ats.release_held(outbox, NOW + 5_000) == 0


def letters(outbox: Outbox, registry: TopicRegistry) -> list[dict[str, Any]]:
    return [default_codec().decode(value)[1] for _, _, value, _ in outbox.to(registry.deadletter.name) if value]


def test_a_best_seller_s_state_stays_in_small_records() -> None:
    built = pipeline(max_record_bytes=16 * 1024)
    registry = built.registry
    hot = [Movement(Kind.RECEIPT, f"h{i}", "wms", "HOT-1", "wh-1", 1, 1_000 + i) for i in range(2_000)]
    store, outbox = Store(PARTITIONS), Outbox()
    built.handle([message(registry, hot[i:i + 100], offset=i) for i in range(0, 2_000, 100)], store, outbox, NOW)
    assert letters(outbox, registry) == []
    assert len(outbox.to(registry.ledger.name)) == 2_000
    sizes = [len(value) for value, _ in store.data.values()] + [len(value) for value in store.history.values()]
    assert max(sizes) <= 16 * 1024 and len(store.history) > 2_000  # one record per event, and bucket records


def test_a_sku_whose_head_would_not_fit_in_a_record_is_dead_lettered_and_the_batch_goes_on() -> None:
    # A SKU stocked at 1,000 locations: its head (its positions, ~30 KB) is over a 16 KiB record limit.
    locations = [{"id": f"store-{i:010d}", "kind": "store", "latitude": 50.0, "longitude": 8.0} for i in range(1_000)]
    network = Network.from_dict({"locations": locations, "channels": [
        {"id": "wms", "locations": [loc["id"] for loc in locations]}]})
    built = pipeline(network, max_record_bytes=16 * 1024)
    registry = built.registry
    hot = [Movement(Kind.RECEIPT, f"h{i}", "wms", "HOT-1", f"store-{i:010d}", 1, 1_000 + i) for i in range(1_000)]
    cold = Movement(Kind.RECEIPT, "c1", "wms", "COLD-1", "store-0000000000", 3, 1_000)
    store, outbox = Store(PARTITIONS), Outbox()
    result = built.handle([message(registry, hot), message(registry, [cold], offset=1)], store, outbox, NOW)
    assert set(store.data) == {"COLD-1"} and result.skus_written == 1
    assert all(not key.startswith(b"HOT-1") for key in store.history)  # nothing of it was written
    dead = letters(outbox, registry)
    assert [d["movement_index"] for d in dead] == list(range(1_000))
    assert {d["reason"] for d in dead} == {"record_too_large"} and "HOT-1" in dead[0]["detail"]
    ledger = [default_codec().decode(value)[1]["sku"] for _, _, value, _ in outbox.to(registry.ledger.name) if value]
    assert ledger == ["COLD-1"]  # nothing of HOT-1 went out
    assert {key for _, key, _, _ in outbox.to(registry.positions.name)} == {b"COLD-1|store-0000000000"}
    assert all(len(value or b"") <= 16 * 1024 for _, _, value, _ in outbox.records)


def test_an_unexpected_failure_isolates_the_one_sku(monkeypatch: pytest.MonkeyPatch) -> None:
    built, registry = setup()
    real = position_record

    def failing(position: Position, now: int) -> dict[str, Any]:
        if position.sku == "BAD-1":
            raise RuntimeError("a bug that only BAD-1 meets")
        return real(position, now)

    monkeypatch.setattr(emit, "position_record", failing)
    bad = [Movement(Kind.RECEIPT, f"b{i}", "wms", "BAD-1", "wh-1", 1, 1_000 + i) for i in range(2)]
    cold = Movement(Kind.RECEIPT, "c1", "wms", "COLD-1", "wh-1", 3, 1_000)
    store, outbox = Store(PARTITIONS), Outbox()
    built.handle([message(registry, bad), message(registry, [cold], offset=1)], store, outbox, NOW)
    assert set(store.data) == {"COLD-1"}
    dead = letters(outbox, registry)
    assert [(d["reason"], d["movement_index"]) for d in dead] == [("internal_error", 0), ("internal_error", 1)]
    assert "a bug that only BAD-1 meets" in dead[0]["detail"]


def test_a_quantity_beyond_the_bounds_is_an_invalid_movement_alone() -> None:
    built, registry = setup()
    good = movement_to_record(Movement(Kind.RECEIPT, "g1", "wms", "SKU-1", "wh-1", 3, 1_000))
    huge = {**good, "event_id": "h1", "quantity": 2**62}
    value = default_codec().encode(Schema.MOVEMENT_BATCH, {"movements": [huge, good]})
    inbound = Inbound(registry.restock("wms").name, sku_partition("SKU-1", PARTITIONS), 0, b"SKU-1", value)
    store, outbox = Store(PARTITIONS), Outbox()
    built.handle([inbound], store, outbox, NOW)
    [letter] = letters(outbox, registry)
    assert (letter["reason"], letter["movement_index"]) == ("invalid_movement", 0)
    assert "quantity" in letter["detail"] and set(store.data) == {"SKU-1"}


def test_an_input_too_large_for_a_dead_letter_keeps_its_first_bytes() -> None:
    built = pipeline(max_record_bytes=64 * 1024)
    registry = built.registry
    garbage = bytes(range(256)) * 800  # 200 KiB, not Avro
    huge = Inbound(registry.sales("web").name, 1, 41, b"K" * 5_000, garbage)
    outbox = Outbox()
    built.handle([huge], Store(PARTITIONS), outbox, NOW)
    [(_, key, value, _)] = outbox.to(registry.deadletter.name)
    assert value is not None and len(value) <= 64 * 1024 and len(key) <= 1_024
    [letter] = letters(outbox, registry)
    assert letter["reason"] == "not_avro" and garbage.startswith(letter["value"]) and len(letter["value"]) > 50_000
    assert f"the original is at {registry.sales('web').name}/1/41" in letter["detail"]


def test_expiries_come_only_from_the_workers_topic_and_never_clash_with_a_channel_event() -> None:
    built, registry = setup()
    store, outbox = Store(PARTITIONS), Outbox()
    partition = sku_partition("SKU-1", PARTITIONS)
    built.handle([message(registry, [Movement(Kind.RECEIPT, "r1", "wms", "SKU-1", "wh-1", 5, 1_000)])],
                 store, outbox, NOW)
    # A request whose own event id looks like the old expiry ids.
    request = Movement(Kind.RESERVATION_PLACED, "expired:o1", "web", "SKU-1", "wh-1", 2, NOW,
                       reservation_id="o1", expires_at=NOW + 1_000)
    built.handle([message(registry, [request], side="sales")], store, outbox, NOW)
    forged = [Movement(Kind.RESERVATION_EXPIRED, "x1", "web", "SKU-1", None, 0, NOW + 1_000, reservation_id="o1"),
              Movement(Kind.SALE, "~sale", "web", "SKU-1", "wh-1", 1, NOW)]
    result = built.handle([message(registry, forged, side="sales", offset=1)], store, outbox, NOW + 1_000)
    assert result.dead_letters == 2
    assert [(d["reason"], d["movement_index"]) for d in letters(outbox, registry)] == [("wrong_topic", 0),
                                                                                       ("invalid_movement", 1)]
    assert store.holds("SKU-1") == ["o1"]  # the channel could not end its own hold
    # The worker's own expiry goes through the expiries topic and ends the hold.
    sent = Outbox()
    assert built.expiries.request_due(sent, NOW + 1_000) == 1
    [(topic, key, value, _)] = sent.records
    assert topic == registry.expiries.name
    built.handle([Inbound(topic, partition, 0, key, value)], store, outbox, NOW + 1_000)
    assert store.holds("SKU-1") == []


def test_a_worker_made_movement_must_name_a_channel_in_its_event_id() -> None:
    built, registry = setup()
    orphan = movement_to_record(Movement(Kind.RESERVATION_EXPIRED, "~expired", "web", "SKU-1", None, 0, NOW,
                                         reservation_id="o1"))
    inbound = Inbound(registry.expiries.name, sku_partition("SKU-1", PARTITIONS), 0, b"SKU-1",
                      default_codec().encode(Schema.MOVEMENT, orphan))
    outbox = Outbox()
    assert built.handle([inbound], Store(PARTITIONS), outbox, NOW).dead_letters == 1
    [letter] = letters(outbox, registry)
    assert letter["reason"] == "invalid_movement" and "names no channel" in letter["detail"]



def test_a_best_seller_s_movements_in_one_batch_are_applied_in_steps_and_its_feeds_get_one_update() -> None:
    built = pipeline()
    registry = built.registry
    count = 2 * decode.SKU_STEP + 500
    hot = [Movement(Kind.RECEIPT, f"h{i}", "wms", "HOT-1", "wh-1", 1, 1_000 + i) for i in range(count)]
    batch = [message(registry, hot[i:i + 500], offset=i // 500) for i in range(0, count, 500)]
    store, outbox = Store(PARTITIONS), ProducerOutbox()
    steps = sum(1 for _ in built.steps(batch, store, outbox, BatchResult(), NOW))
    assert steps == len(batch) + 3  # one per message decoded, then the SKU's movements in three steps
    assert store.writes == ["HOT-1"] * 3  # each step read what the one before wrote
    assert len([r for r in outbox.records if r[0] == registry.ledger.name]) == count
    whole = SkuStock("HOT-1")
    whole.apply_all(hot, NETWORK, NOW)
    selling = [channel for channel in NETWORK.channels.values() if "wh-1" in channel.selling_locations]
    assert selling
    for channel in selling:
        feed = [default_codec().decode(value)[1] for topic, _, value, _ in outbox.records
                if topic == registry.ats(channel.id).name and value]
        assert [update["ats"] for update in feed] == [channel_ats(whole, channel)], channel.id


def test_the_expiry_index_follows_holds_placed_extended_and_ended_without_scanning_a_sku() -> None:
    built, registry = setup()
    expiries = built.expiries
    for n in range(5_000):  # a best-seller's open holds
        expiries.held("SKU-1", Reservation("web", f"r{n}", (("wh-1", 1),), NOW + 1_000 + n, NOW))
    expiries.held("SKU-1", Reservation("web", "r0", (("wh-1", 1),), NOW + 60_000, NOW))  # extended
    expiries.ended("SKU-1", "web", "r1")  # released
    expiries.ended("SKU-1", "web", "r2", lapsed_at=NOW + 1_002)  # expired as of its time
    expiries.ended("SKU-1", "web", "r0", lapsed_at=NOW + 1_000)  # an expiry as of before its extension
    assert len(expiries) == 4_998
    sent = Outbox()
    assert expiries.request_due(sent, NOW + 1_010) == 8  # r3..r10: not r0 (extended), r1, r2 (ended)
    reservations = [default_codec().decode(value or b"")[1]["reservation_id"] for _, _, value, _ in sent.records]
    assert reservations == [f"r{n}" for n in range(3, 11)]
    assert expiries.request_due(Outbox(), NOW + 1_010) == 0  # asked already: again only after a while
    # Later: those eight again (not applied yet) and every other open hold lapsed by then; r0 is not due yet.
    assert expiries.request_due(Outbox(), NOW + 1_010 + EXPIRY_RESEND_MS) == 4_997
