"""Orders through the worker's batch logic, without a broker: the coordinator's steps and the owners' answers are
fed back as the order-steps topic would, until nothing is left to say."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from streams.domain import Kind, Movement, Network
from streams.domain.order_sourcing import LineStock, OrderLine
from streams.domain.orders import DECISION_MS, HOLD_MARGIN_MS, OrderRequest
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import default_codec
from streams.wire.order_records import figures_step, order_request_record
from streams.wire.partitioner import partition_for
from streams.wire.schemas import Schema
from streams.worker.processing.messages import Inbound
from streams.worker.processing.orders import TICK_RESEND_MS, StepPacker
from streams.worker.processing.outputs import ProducerOutbox
from streams.worker.processing.pipeline import Pipeline
from streams.worker.state.keys import HISTORY_MARK, ORDER_PREFIX, ORDERS_MARK, order_key
from streams.worker.state.records import RecordEncoder
from tests.unit.domain.helpers import NETWORK, NOW
from tests.unit.fakes import Outbox, Store
from tests.unit.worker.helpers import PARTITIONS, message, pipeline

CODEC = default_codec()
BERLIN = (52.52, 13.40)  # store-a is here
STAMP = "5yc1s"  # NOW in base 36: an order's holds carry the time it was requested


class Worker:
    """One pipeline over one store, and the steps it has sent but not yet read."""

    def __init__(self, network: Network = NETWORK) -> None:
        self.pipeline: Pipeline = pipeline(network)
        self.registry: TopicRegistry = self.pipeline.registry
        self.store = Store(PARTITIONS)
        self.offset = 0
        self.steps: list[tuple[bytes, bytes, int | None]] = []  # key, value, partition (None: by key)
        self.replies: list[dict[str, Any]] = []

    def handle(self, batch: list[Inbound], now: int = NOW) -> Outbox:
        outbox = Outbox()
        self.pipeline.handle(batch, self.store, outbox, now)
        self.steps += [(key, value, partition) for _, key, value, partition in outbox.to(
            self.registry.order_steps.name) if value]
        for channel in NETWORK.channels:
            for _, _, value, _ in outbox.to(self.registry.replies(channel).name):
                name, record = CODEC.decode(value or b"")
                if name == Schema.ORDER_DECISION:
                    self.replies.append(record)
        return outbox

    def stock(self, sku: str, **units: int) -> None:
        movements = [Movement(Kind.RECEIPT, f"r-{sku}-{loc}", "wms", sku, loc.replace("_", "-"), n, 1_000)
                     for loc, n in units.items()]
        self.handle([message(self.registry, [m]) for m in movements])

    def order(self, request: OrderRequest, now: int = NOW) -> None:
        value = CODEC.encode(Schema.ORDER_REQUEST, order_request_record(request, now))
        key = request.order_id.encode()
        self.offset += 1
        self.handle([Inbound(self.registry.sales(request.channel).name, partition_for(key, PARTITIONS),
                             self.offset, key, value)], now)

    def deliver_steps(self, now: int = NOW, rounds: int | None = None) -> None:
        """Hand the steps sent back to the pipeline, one batch per round: `rounds` of them, or until none are left."""
        for _ in range(rounds or 20):
            if not self.steps:
                return
            steps, self.steps = self.steps, []
            batch = []
            for key, value, partition in steps:
                self.offset += 1
                batch.append(Inbound(self.registry.order_steps.name,
                                     partition_for(key, PARTITIONS) if partition is None else partition,
                                     self.offset, key, value))
            self.handle(batch, now)
        if rounds is None:
            raise AssertionError("the steps never ended")

    def pass_deadline(self) -> None:
        """The decision window passes: the timer ticks the one undecided order, and every step is delivered."""
        late = NOW + DECISION_MS + 1
        ticks = Outbox()
        assert self.pipeline.order_timer.request_due(ticks, late) == 1
        self.steps += [(key, value, partition) for _, key, value, partition in ticks.records if value]
        self.deliver_steps(now=late)

    def position(self, sku: str, location: str) -> tuple[int, int]:
        stock = self.pipeline_table_stock(sku)
        p = stock.position(location)
        return p.on_hand, p.reserved

    def pipeline_table_stock(self, sku: str) -> Any:
        from streams.worker.state.records import head_of

        raw = self.store.get_raw(sku.encode(), 0)
        assert raw is not None
        return head_of(CODEC, raw)


def step_kinds(worker: Worker) -> list[str]:
    """The kinds of the steps sent and not yet read (packed or not)."""
    kinds = []
    for _, value, _ in worker.steps:
        name, record = CODEC.decode(value)
        kinds += [step["kind"] for step in record["steps"]] if name == Schema.ORDER_STEP_BATCH else [record["kind"]]
    return sorted(kinds)


def request(order_id: str, *lines: tuple[str, int], now: int = NOW) -> OrderRequest:
    return OrderRequest(order_id, "web", tuple(OrderLine(str(i + 1), sku, n) for i, (sku, n) in enumerate(lines)),
                        *BERLIN, expires_at=now + 3_600_000)


def test_a_cart_is_held_whole_in_the_fewest_parcels_and_confirmed_until_the_order_expires() -> None:
    worker = Worker()
    worker.stock("SKU-1", store_a=1, wh_1=5)
    worker.stock("SKU-2", wh_1=3)
    worker.order(request("o-1", ("SKU-1", 2), ("SKU-2", 1)))
    worker.deliver_steps()
    [decision] = worker.replies
    assert decision["accepted"] and decision["reason"] == ""
    # One parcel from wh-1 (it has both), not store-a's single unit of SKU-1 plus a second parcel.
    assert [(p["location"], [(line["line_id"], line["quantity"]) for line in p["lines"]])
            for p in decision["parcels"]] == [("wh-1", [("1", 2), ("2", 1)])]
    assert [(line["line_id"], line["reservation_id"], line["parts"]) for line in decision["lines"]] == [
        ("1", f"o-1/1/1.{STAMP}", [{"location": "wh-1", "quantity": 2}]),
        ("2", f"o-1/2/1.{STAMP}", [{"location": "wh-1", "quantity": 1}])]
    assert decision["expires_at"] == NOW + 3_600_000
    assert worker.position("SKU-1", "wh-1") == (5, 2) and worker.position("SKU-2", "wh-1") == (3, 1)
    # Confirmed: the holds last as long as the order, not the tentative hold's short expiry.
    assert worker.pipeline.expiries.request_due(Outbox(), NOW + DECISION_MS + HOLD_MARGIN_MS + 1) == 0
    assert worker.store.holds("SKU-1") == [f"o-1/1/1.{STAMP}"]


def test_a_cart_line_held_first_where_it_would_go_alone_is_moved_to_the_carts_parcel() -> None:
    """Alone, SKU-1 would leave from store-a (in Berlin, where the order goes); with SKU-2 only at wh-1 the cart
    takes one parcel from wh-1: SKU-1's hold moves there in one step. Three rounds, no figures asked."""
    worker = Worker()
    worker.stock("SKU-1", store_a=3, wh_1=5)
    worker.stock("SKU-2", wh_1=3)
    worker.order(request("o-m", ("SKU-1", 2), ("SKU-2", 1)))
    assert step_kinds(worker) == ["source_hold", "source_hold"]
    worker.deliver_steps(rounds=1)
    assert worker.position("SKU-1", "store-a") == (3, 2)  # held where it would go alone
    worker.deliver_steps(rounds=1)
    assert step_kinds(worker) == ["place_hold"]
    worker.deliver_steps()
    [decision] = worker.replies
    assert decision["accepted"] and [p["location"] for p in decision["parcels"]] == ["wh-1"]
    assert worker.position("SKU-1", "store-a") == (3, 0) and worker.position("SKU-1", "wh-1") == (5, 2)
    assert worker.store.holds("SKU-1") == [f"o-m/1/1.{STAMP}"]
    assert worker.pipeline.expiries.request_due(Outbox(), NOW + DECISION_MS + HOLD_MARGIN_MS + 1) == 0


def test_an_order_that_cannot_be_filled_whole_holds_nothing() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=5)
    worker.stock("SKU-2", wh_1=1)
    worker.order(request("o-2", ("SKU-1", 1), ("SKU-2", 2)))
    worker.deliver_steps()
    [decision] = worker.replies
    assert (decision["accepted"], decision["reason"], decision["line"]) == (False, "insufficient_stock", "2")
    assert worker.store.holds("SKU-1") == [] and worker.position("SKU-1", "wh-1") == (5, 0)


def test_stock_taken_between_the_figures_and_the_hold_makes_the_order_plan_again() -> None:
    worker = Worker()
    worker.stock("SKU-1", store_a=2, wh_1=4)  # web keeps a buffer of 2
    worker.order(replace(request("o-3", ("SKU-1", 2)), max_split=1))  # a split limit: planned in two rounds
    worker.deliver_steps(rounds=2)  # the figures are in: the plan holds at store-a (the nearest)
    # A store sale takes store-a's units before the hold arrives.
    worker.handle([message(worker.registry, [Movement(Kind.SALE, "s-1", "pos-a", "SKU-1", "store-a", 2, 2_000)],
                           offset=7, side="sales")])
    worker.deliver_steps()
    [decision] = worker.replies
    assert decision["accepted"]
    assert [line["reservation_id"] for line in decision["lines"]] == [f"o-3/1/2.{STAMP}"]  # the second attempt
    assert [p["location"] for p in decision["parcels"]] == ["wh-1"]
    assert worker.store.holds("SKU-1") == [f"o-3/1/2.{STAMP}"]


def test_an_order_of_one_line_is_planned_and_held_by_its_owner_in_one_round() -> None:
    """No figures asked, no confirmation: the owner plans the line as the order would be planned and holds it
    until the order expires; the coordinator decides on its answer."""
    worker = Worker()
    worker.stock("SKU-1", store_a=3, wh_1=4)
    worker.order(request("o-1r", ("SKU-1", 2)))
    kinds = [CODEC.decode(value)[1]["kind"] for _, value, _ in worker.steps]
    assert kinds == ["source_hold"]
    worker.deliver_steps(rounds=1)  # the owner holds it and answers
    assert worker.store.holds("SKU-1") == [f"o-1r/1/1.{STAMP}"] and worker.replies == []
    worker.deliver_steps()  # the coordinator decides; nothing else is sent
    [decision] = worker.replies
    assert decision["accepted"] and [p["location"] for p in decision["parcels"]] == ["store-a"]
    assert decision["parcels"][0]["distance_km"] < 1  # the plan as the order would have it, distances and all
    assert [(line["reservation_id"], line["parts"]) for line in decision["lines"]] == [
        (f"o-1r/1/1.{STAMP}", [{"location": "store-a", "quantity": 2}])]
    prefix = b"SKU-1" + HISTORY_MARK + b"r:"
    [hold] = [CODEC.decode(value)[1] for key, value in worker.store.history.items() if key.startswith(prefix)]
    assert hold["expires_at"] == decision["expires_at"] == NOW + 3_600_000  # held until the order expires
    assert worker.position("SKU-1", "store-a") == (3, 2)

    worker.order(request("o-1x", ("SKU-1", 9)))  # more than the web may sell: refused in the same round
    worker.deliver_steps()
    refused = worker.replies[-1]
    assert (refused["accepted"], refused["reason"], refused["line"]) == (False, "insufficient_stock", "1")
    assert worker.store.holds("SKU-1") == [f"o-1r/1/1.{STAMP}"]


def test_a_one_round_order_undecided_at_its_deadline_releases_its_hold() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=5)
    worker.order(request("o-1t", ("SKU-1", 1)))
    worker.deliver_steps(rounds=1)  # held; the answer not yet read by the coordinator
    worker.pass_deadline()
    [decision] = worker.replies
    assert (decision["accepted"], decision["reason"]) == (False, "timeout")
    assert worker.store.holds("SKU-1") == [] and worker.position("SKU-1", "wh-1") == (5, 0)


def test_the_same_order_again_gets_the_same_decision_and_other_lines_under_its_id_a_conflict() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=5)
    worker.order(request("o-4", ("SKU-1", 1)))
    worker.deliver_steps()
    worker.order(request("o-4", ("SKU-1", 1)))
    worker.order(request("o-4", ("SKU-1", 3)))
    first, again, conflict = worker.replies
    assert again == first and first["accepted"]
    assert (conflict["accepted"], conflict["reason"]) == (False, "conflict")
    assert worker.position("SKU-1", "wh-1") == (5, 1)  # held once


def test_an_order_undecided_at_its_deadline_is_refused_and_its_holds_released() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=5)
    worker.stock("SKU-2", wh_1=5)
    worker.order(request("o-5", ("SKU-1", 1), ("SKU-2", 1)))
    worker.deliver_steps(rounds=1)  # held first; the answers not yet read by the coordinator
    worker.pass_deadline()
    [decision] = worker.replies
    assert (decision["accepted"], decision["reason"]) == (False, "timeout")
    assert worker.store.holds("SKU-1") == [] and worker.store.holds("SKU-2") == []
    assert len(worker.pipeline.order_timer) == 0


def test_bad_lines_are_refused_naming_the_line() -> None:
    worker = Worker()
    worker.order(request("o-6", ("SKU-1", 1), ("SKU-1", 2)))
    worker.order(request("o-7", ("SKU-1", 0)))
    worker.order(OrderRequest("o-8", "web", (OrderLine("1", "", 1, alias="no-such-barcode"),), *BERLIN,
                              expires_at=NOW + 60_000))
    assert [(d["order_id"], d["reason"], d["line"]) for d in worker.replies] == [
        ("o-6", "duplicate_line", "2"), ("o-7", "invalid_quantity", "1"), ("o-8", "unknown_alias", "1")]
    assert worker.steps == []


def test_a_decided_order_is_forgotten_once_the_order_memory_has_passed() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=10)
    for n in range(3):
        worker.order(request(f"o-{n}", ("SKU-1", 1)))
    worker.deliver_steps()
    orders = [key for key in worker.store.history if key.startswith(ORDER_PREFIX)]
    assert len(orders) == 3 and len(worker.replies) == 3
    timer = worker.pipeline.order_timer
    assert timer.request_due(Outbox(), NOW + timer.memory_ms) == 0  # not yet: the bucket is not over
    later = NOW + timer.memory_ms + 2 * timer.bucket_ms
    asked = Outbox()
    assert timer.request_due(asked, later) == len({partition_for(f"o-{n}".encode(), PARTITIONS) for n in range(3)})
    worker.steps += [(key, value, partition) for _, key, value, partition in asked.records if value]
    worker.deliver_steps(now=later)
    assert [key for key in worker.store.history if key.startswith(ORDERS_MARK)] == []
    assert timer.request_due(Outbox(), later + TICK_RESEND_MS) == 0
    # Its id is free again: the same request now is a new order (held again: 2 units now, of 10).
    worker.order(request("o-0", ("SKU-1", 1), now=later), now=later)
    worker.deliver_steps(now=later)
    assert worker.replies[-1]["accepted"] and worker.position("SKU-1", "wh-1") == (10, 4)


def test_a_batch_lists_the_orders_it_decided_in_each_time_bucket_record_once() -> None:
    worker = Worker()
    worker.stock("SKU-1", wh_1=100)
    for n in range(30):
        worker.order(request(f"o-{n}", ("SKU-1", 1)))
    put_raw, bucket_writes = worker.store.put_raw, []

    def counting(key: bytes, value: bytes | None, partition: int) -> None:
        if key.startswith(ORDERS_MARK) and not key.startswith(ORDER_PREFIX):
            bucket_writes.append(key)
        put_raw(key, value, partition)

    worker.store.put_raw = counting  # type: ignore[method-assign]
    worker.deliver_steps()
    assert len(worker.replies) == 30 and all(reply["accepted"] for reply in worker.replies)
    assert sorted(bucket_writes) == sorted(set(bucket_writes))  # each bucket record written once
    listed = [entry for key in bucket_writes
              for entry in CODEC.decode(worker.store.history[key])[1]["keys"].split("\n")]
    assert sorted(listed) == sorted(f"web:o-{n}" for n in range(30))


def test_a_batch_that_was_not_committed_leaves_its_orders_as_they_were_committed() -> None:
    """The coordinator keeps undecided orders decoded between batches; one worked on in a batch that then failed
    to commit is read from its stored record again, not taken as the failed batch left it."""
    def run(abort_the_figures_batch: bool) -> list[dict[str, Any]]:
        worker = Worker()
        worker.stock("SKU-1", wh_1=5)
        worker.stock("SKU-2", wh_1=5)
        worker.order(request("o-1", ("SKU-1", 2), ("SKU-2", 1)))
        worker.deliver_steps(rounds=1)  # the owners answer the figures
        if abort_the_figures_batch:
            saved = copy.deepcopy(worker.store)
            aborted = ProducerOutbox()  # handled, never committed: its actions never run
            batch = [Inbound(worker.registry.order_steps.name, partition_for(key, PARTITIONS)
                             if partition is None else partition, 1_000 + n, key, value)
                     for n, (key, value, partition) in enumerate(worker.steps)]
            worker.pipeline.handle(batch, worker.store, aborted, NOW)
            assert any(topic == worker.registry.order_steps.name for topic, *_ in aborted.records)
            worker.store = saved
        worker.deliver_steps()
        return worker.replies

    assert run(abort_the_figures_batch=True) == run(abort_the_figures_batch=False)
    [decision] = run(abort_the_figures_batch=True)
    assert decision["accepted"] and len(decision["lines"]) == 2


def test_steps_are_packed_per_partition_and_split_below_the_record_limit() -> None:
    registry = Worker().registry
    encoder = RecordEncoder(CODEC, 4096)
    packer = StepPacker(registry, encoder, PARTITIONS)
    sent = []
    for n in range(300):
        order_id, step = figures_step({"order_id": f"o-{n}", "channel": "web", "line_id": "1", "sku": "SKU-1",
                                  "attempt": 1}, LineStock({f"loc-{i}": i + 1 for i in range(n % 7)}, 5), NOW)
        packer.add(order_id.encode(), encoder.encode(Schema.ORDER_STEP, step))
        sent.append(CODEC.decode(encoder.encode(Schema.ORDER_STEP, step))[1])  # with the defaults filled in
    outbox = Outbox()
    packer.flush(outbox)
    received: list[dict[str, Any]] = []
    for topic, key, value, partition in outbox.records:
        assert topic == registry.order_steps.name and value is not None and len(value) <= 4096
        name, record = CODEC.decode(value)  # what any Avro reader makes of it
        steps = record["steps"] if name == Schema.ORDER_STEP_BATCH else [record]
        assert {partition_for(s["order_id"].encode(), PARTITIONS) for s in steps} == {partition}
        assert key == steps[0]["order_id"].encode()
        received += steps
    assert len(outbox.records) > PARTITIONS  # some partition's steps did not fit one message
    assert sorted(received, key=lambda s: s["order_id"]) == sorted(sent, key=lambda s: s["order_id"])


def test_a_pickup_order_is_planned_for_the_store_the_customer_chose() -> None:
    worker = Worker()
    worker.stock("SKU-1", store_a=5, store_b=5, wh_1=5)

    def pickup(order_id: str, channel: str, store: str) -> None:
        worker.order(OrderRequest(order_id, channel, (OrderLine("1", "SKU-1", 1),), *BERLIN, mode="pickup",
                                  expires_at=NOW + 60_000, pickup_at=store))
        worker.deliver_steps()

    pickup("p-1", "web", "store-b")  # Munich, though Berlin's store-a is nearer
    pickup("p-2", "web", "wh-1")  # a warehouse: no pickup there
    pickup("p-3", "market", "store-a")  # not one of the marketplace's locations
    assert [(d["order_id"], d["accepted"], d["reason"], [p["location"] for p in d["parcels"]])
            for d in worker.replies] == [("p-1", True, "", ["store-b"]), ("p-2", False, "not_a_pickup_store", []),
                                         ("p-3", False, "location_not_owned", [])]


def test_a_hundred_line_order_is_held_and_a_larger_one_refused_without_a_trace() -> None:
    worker = Worker()
    skus = [f"BIG-{n:03d}" for n in range(100)]
    for sku in skus:
        worker.stock(sku, wh_1=5)
    worker.order(request("big-1", *[(sku, 2) for sku in skus]))
    worker.deliver_steps()
    [held] = worker.replies
    assert held["accepted"] and len(held["lines"]) == 100 and len(held["parcels"]) == 1
    assert all(worker.position(sku, "wh-1") == (5, 2) for sku in skus)
    for order_id, count in (("big-2", 101), ("big-3", 5_000)):  # 5,000 lines: far past any record's limit
        worker.order(request(order_id, *[(f"X-{n}", 1) for n in range(count)]))
    assert [(d["order_id"], d["reason"]) for d in worker.replies[1:]] == [("big-2", "too_many_lines"),
                                                                          ("big-3", "too_many_lines")]
    assert [key for key in worker.store.history if key.startswith(ORDER_PREFIX) and b"big-" in key] == [
        order_key("web", "big-1")]


def test_an_order_anywhere_but_a_sales_topic_is_dead_lettered_and_the_rest_of_the_batch_applied() -> None:
    worker = Worker()
    registry = worker.registry
    value = CODEC.encode(Schema.ORDER_REQUEST, order_request_record(request("o-9", ("SKU-1", 1)), NOW))
    key = b"o-9"
    partition = partition_for(key, PARTITIONS)
    receipt = Movement(Kind.RECEIPT, "r-ok", "wms", "SKU-1", "wh-1", 3, 1_000)
    outbox = worker.handle([Inbound(registry.restock("web").name, partition, 1, key, value),
                            Inbound(registry.expiries.name, partition, 1, key, value),
                            message(registry, [receipt], offset=2)])
    letters = [CODEC.decode(v or b"")[1] for _, _, v, _ in outbox.to(registry.deadletter.name)]
    assert [letter["reason"] for letter in letters] == ["wrong_topic", "wrong_schema"]
    assert worker.position("SKU-1", "wh-1") == (3, 0) and worker.replies == []
