"""The stream pipeline on the real broker, checked against the domain replaying the ledger."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from streams.domain import Kind, Movement
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.conftest import producer, wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK, retail_workload


def settle(deployment: Deployment, timeout_s: float = 240) -> None:
    deployment.settle(timeout_s)


def test_random_workload_equals_domain_replay(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    movements = retail_workload(50_000, skus=300, seed=11, expiring_after_ms=20_000)
    started = time.monotonic()
    deployment.send(movements, pack=25)
    settle(deployment)
    elapsed = time.monotonic() - started

    stocks, history = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    # Every distinct movement sent is in the ledger exactly once (re-sends were duplicates, not re-applied).
    ledgered = Counter(f"{e['channel']}:{e['event_id']}" for e in history)
    assert set(deployment.sent) <= set(ledgered)
    statuses = Counter(e["status"] for e in history)
    kinds = Counter(e["kind"] for e in history)
    assert statuses["absorbed"] > 0 and statuses["refused"] > 0 and kinds["reservation_expired"] > 0
    print(f"\n50k workload: {len(movements)} sent in {elapsed:.1f}s; statuses {dict(statuses)}")


def race_requests(sku: str, per_channel: int) -> list[Movement]:
    """web and app both ask for one unit of `sku` at w1, `per_channel` times each, interleaved."""
    expires = int(time.time() * 1000) + 30 * 60 * 1000
    at = int(time.time() * 1000) - 1_000
    return [Movement(Kind.RESERVATION_PLACED, f"race-{channel}-{i}", channel, sku, "w1", 1, at,
                     reservation_id=f"order-{channel}-{i}", expires_at=expires)
            for i in range(per_channel) for channel in ("web", "app")]


def decisions(deployment: Deployment) -> dict[str, list[dict[str, object]]]:
    """Every reservation decision on the web and app reply topics, by channel:reservation."""
    found: dict[str, list[dict[str, object]]] = {}
    for channel in ("web", "app"):
        for _, value, _, _ in deployment.read(deployment.registry.replies(channel).name):
            found.setdefault(f"{value['channel']}:{value['reservation_id']}", []).append(value)
    return found


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_two_channels_racing_for_the_last_units(deployment: Deployment, store: str) -> None:
    deployment.store = store
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    at = int(time.time() * 1000) - 5_000
    deployment.send_applied([Movement(Kind.RECEIPT, "stock-in", "wms", "RACE-1", "w1", 10, at)])
    deployment.send(race_requests("RACE-1", 30), pack=1)
    settle(deployment)

    answers = decisions(deployment)
    assert len(answers) == 60
    granted = [key for key, answer in answers.items() if answer[-1]["accepted"]]
    assert len(granted) == 10
    assert {a[-1]["reason"] for a in answers.values() if not a[-1]["accepted"]} == {"insufficient_stock"}
    stocks, _ = deployment.replay_ledger()
    assert stocks["RACE-1"].position("w1").reserved == 10 and stocks["RACE-1"].available("w1") == 0
    deployment.assert_outputs_match(stocks)


def test_worker_killed_mid_stream_loses_and_doubles_nothing(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    first = deployment.start_worker("first")
    movements = retail_workload(20_000, skus=150, seed=5, expiring_after_ms=30_000)
    at = int(time.time() * 1000) - 5_000
    deployment.send_applied([Movement(Kind.RECEIPT, "stock-in", "wms", "RACE-1", "w1", 10, at)])
    deployment.send(movements[:12_000] + race_requests("RACE-1", 20)[:20], pack=10)
    # Kill it hard once it is visibly mid-stream (it has published positions but not consumed everything).
    wait_for(lambda: len(deployment.read(deployment.registry.positions.name)) > 500, 60, "processing to start")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    deployment.send(movements[12_000:] + race_requests("RACE-1", 20)[20:], pack=10)
    deployment.start_worker("second")
    settle(deployment)

    assert [(v["reason"], v["detail"]) for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)] == []
    stocks, history = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    ledgered = {f"{e['channel']}:{e['event_id']}" for e in history}
    missing = [(key, deployment.sent[key].kind.value, deployment.sent[key].sku) for key in deployment.sent
               if key not in ledgered]
    assert missing == []
    answers = decisions(deployment)
    # A request the workload sent again gets a decision again: the same one while the hold stands; once the hold
    # has ended, a refusal saying how. Never an acceptance without a hold.
    for answer in answers.values():
        original = answer[0]
        for again in answer[1:]:
            assert again["accepted"] == original["accepted"] or (
                original["accepted"] and again["reason"] in ("expired", "released", "fulfilled")), answer
        assert all(a["parts"] for a in answer if a["accepted"]), answer
    race = [answer for answer in answers.values() if answer[0]["sku"] == "RACE-1"]
    assert len(race) == 40 and sum(1 for answer in race if answer[0]["accepted"]) == 10


def test_second_worker_joins_and_leaves(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("first")
    movements = retail_workload(24_000, skus=200, seed=23, expiring_after_ms=30_000)
    deployment.send(movements[:8_000], pack=10)
    second = deployment.start_worker("second", wait=False)
    deployment.send(movements[8_000:16_000], pack=10)
    wait_for(second.ready, 120, "the second worker ready")
    assert second.stop(signal.SIGTERM) == 0
    deployment.send(movements[16_000:], pack=10)
    settle(deployment)

    stocks, history = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    assert set(deployment.sent) <= {f"{e['channel']}:{e['event_id']}" for e in history}
    # The second worker really took part: it wrote ledger entries of its own (its log says it was assigned).
    assert "ready" in second.log.read_text()


def test_every_kind_of_bad_input_is_dead_lettered(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    codec, registry = deployment.codec, deployment.registry
    at = int(time.time() * 1000) - 1_000

    def movement(**fields: object) -> dict[str, object]:
        return movement_to_record(Movement(Kind.SALE, "ok", "pos-1", "SKU-1", "s1", 1, at)) | fields

    sales, restock = registry.sales("pos-1").name, registry.restock("wms").name
    good = movement(event_id="good-1")
    batch = codec.encode(Schema.MOVEMENT_BATCH, {"movements": [good, movement(event_id="neg", quantity=0)]})
    cases = {
        "not_avro": (sales, b"SKU-1", b"\x00garbage"),
        "unknown_schema": (sales, b"SKU-1", b"\xc3\x01" + bytes(8) + b"\x02"),
        "schema_violation": (sales, b"SKU-1", codec.encode(Schema.MOVEMENT, good)[:14]),
        "wrong_schema": (sales, b"SKU-1", codec.encode(Schema.ATS_UPDATE, {
            "channel": "x", "sku": "SKU-1", "ats": 1, "version": 1, "network_version": 0, "updated_at": 0})),
        "invalid_movement": (sales, b"bad sku", codec.encode(Schema.MOVEMENT,
                                                             movement(event_id="b1", sku="bad sku!"))),
        "unknown_location": (sales, b"SKU-1", codec.encode(Schema.MOVEMENT,
                                                           movement(event_id="b2", location="nowhere"))),
        "location_not_owned": (sales, b"SKU-1", codec.encode(Schema.MOVEMENT,
                                                             movement(event_id="b3", location="s2"))),
        "wrong_topic": (sales, b"SKU-1", codec.encode(Schema.MOVEMENT,
                                                      movement(event_id="b4", kind="receipt"))),
    }
    for topic, key, value in cases.values():
        deployment.send_raw(topic, key, value)
    deployment.send_raw(sales, b"SKU-1", batch)
    after = Movement(Kind.RECEIPT, "after", "wms", "SKU-1", "s1", 5, at)
    deployment.send_raw(restock, b"SKU-1", codec.encode(Schema.MOVEMENT, movement_to_record(after)))
    deployment.sent.update({after.key: after, "pos-1:good-1": Movement(Kind.SALE, "good-1", "pos-1", "SKU-1", "s1",
                                                                       1, at)})
    settle(deployment)

    letters = [value for _, value, _, _ in deployment.read(registry.deadletter.name)]
    by_reason: dict[str, list[dict[str, object]]] = {}
    for letter in letters:
        by_reason.setdefault(str(letter["reason"]), []).append(letter)
    for reason, (topic, key, value) in cases.items():
        assert [(d["source_topic"], d["key"], d["value"]) for d in by_reason[reason]
                if d["movement_index"] is None] == [(topic, key, value)], reason
    # One bad movement in a batch: only it is dead-lettered (with its index); its neighbour was applied.
    [negative] = [d for d in by_reason["invalid_movement"] if d["movement_index"] == 1]
    assert "quantity: must be positive" in str(negative["detail"])
    assert negative["value"] == batch
    stocks, history = deployment.replay_ledger()
    assert {e["event_id"] for e in history} == {"good-1", "after"}
    assert stocks["SKU-1"].position("s1").on_hand == 5 - 1  # the worker went on after every bad input


def test_a_poison_input_or_an_unwritable_record_never_stops_the_worker(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1", env={"STOCKSYNC_MAX_RECORD_BYTES": "32768"})
    registry, at = deployment.registry, int(time.time() * 1000) - 60_000
    sales = registry.sales("pos-1").name
    # A message the broker takes (~1 MB, not Avro) whose whole dead letter could not be written.
    garbage = b"\x00" + bytes(range(256)) * 4_062
    big = producer(deployment.bootstrap, **{"message.max.bytes": 2_000_000})
    big.produce(sales, key=b"SKU-1", value=garbage)
    assert big.flush(30) == 0
    # One message of 1,000 movements of one SKU: once a value over 32 KiB; now small records of its own.
    hot = [Movement(Kind.RECEIPT, f"hot-{i}", "wms", "HOT-1", "w1", 1, at + i) for i in range(1_000)]
    deployment.send(hot, pack=1_000)
    cold = Movement(Kind.RECEIPT, "cold-1", "wms", "COLD-1", "w1", 5, at)
    deployment.send_applied([cold])  # the worker went on
    settle(deployment)

    letters = [value for _, value, _, _ in deployment.read(registry.deadletter.name)]
    [poison] = [d for d in letters if d["reason"] == "not_avro"]
    assert garbage.startswith(poison["value"]) and len(poison["value"]) < 32_768 < len(garbage)
    assert f"the original is at {sales}/" in str(poison["detail"])
    assert [d for d in letters if d["reason"] != "not_avro"] == []
    stocks, _ = deployment.replay_ledger()
    assert stocks["HOT-1"].position("w1").on_hand == 1_000 and stocks["COLD-1"].position("w1").on_hand == 5
    assert max(len(value) for value in deployment.read_raw(registry.stock_changelog.name)) <= 32_768
    assert worker.ready()
    assert "reading the inputs failed" not in worker.log.read_text()


def test_network_changes_apply_live(deployment: Deployment) -> None:
    version = deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1")
    at = int(time.time() * 1000) - 5_000
    deployment.send([Movement(Kind.RECEIPT, "in-1", "wms", "SKU-1", "w1", 20, at)])
    settle(deployment)
    web_feed = deployment.registry.ats("web").name
    assert deployment.latest(web_feed)[b"SKU-1"]["ats"] == 20 - 2

    changed = {**NETWORK, "channels": [
        *[{**ch, "buffer": 7} if ch["id"] == "web" else ch for ch in NETWORK["channels"]],
        {"id": "kiosk", "locations": ["w1"], "buffer": 1}]}
    new_version = deployment.apply_network(changed)
    assert new_version > version
    kiosk_feed = deployment.registry.ats("kiosk").name
    wait_for(lambda: deployment.latest(web_feed)[b"SKU-1"]["ats"] == 20 - 7, 60, "web's ATS after its new buffer")
    wait_for(lambda: deployment.latest(kiosk_feed).get(b"SKU-1", {}).get("ats") == 19, 60, "the new channel's feed")
    assert deployment.latest(web_feed)[b"SKU-1"]["network_version"] == new_version

    # The new channel's input topics are subscribed at run time (a rebalance), then its sale is applied.
    # A message produced before that rebalance completes may wait for the next one: the test waits for it first.
    kiosk_sales = deployment.registry.sales("kiosk").name
    wait_for(lambda: kiosk_sales in worker.status().get("assigned_inputs", []), 60, "the kiosk topics assigned")
    deployment.send([Movement(Kind.SALE, "k-1", "kiosk", "SKU-1", "w1", 4, at + 1_000)])
    try:
        wait_for(lambda: deployment.latest(kiosk_feed)[b"SKU-1"]["ats"] == 15, 90, "the kiosk sale to reach its feed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; input lag {deployment.input_lag()}") from None
    assert deployment.latest(web_feed)[b"SKU-1"]["ats"] == 16 - 7


def test_a_worker_that_gave_partitions_away_republishes_none_of_their_skus(deployment: Deployment) -> None:
    """A network change makes every worker republish the ATS of the SKUs it holds. The memory store (tests,
    demos) still holds what the worker wrote for partitions it has given away: their figures must not be
    published (only a partition's owner writes its outputs)."""
    deployment.apply_network(NETWORK)
    first = deployment.start_worker("first")
    at = int(time.time() * 1000) - 60_000
    skus = [f"SKU-G{i}" for i in range(24)]
    deployment.send_applied([Movement(Kind.RECEIPT, f"in-{sku}", "wms", sku, "w1", 30, at) for sku in skus])
    second = deployment.start_worker("second")
    wait_for(lambda: bool(first.status().get("assigned_inputs") and second.status().get("assigned_inputs")), 60,
             "both workers reading")
    deployment.send_applied([Movement(Kind.SALE, f"out-{sku}", "web", sku, "w1", 3, at + 1_000) for sku in skus])
    deployment.apply_network({**NETWORK, "channels": [{**ch, "buffer": 5} if ch["id"] == "web" else ch
                                                      for ch in NETWORK["channels"]]})
    web_feed = deployment.registry.ats("web").name
    wait_for(lambda: all(deployment.latest(web_feed).get(sku.encode(), {}).get("ats") == 30 - 3 - 5
                         for sku in skus), 60, "every SKU's web ATS after the new buffer")
    deployment.settle()
    assert deployment.versions_going_back(web_feed) == []
    assert {sku: deployment.latest(web_feed)[sku.encode()]["ats"] for sku in skus} == dict.fromkeys(skus, 22)
