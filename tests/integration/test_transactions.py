"""One batch is one transaction on the real broker: a worker killed between writing and committing leaves nothing
visible and nothing doubled, a paused worker is fenced, and a record the broker refuses isolates its message."""

from __future__ import annotations

import signal
import time
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from streams.domain import Kind, Movement
from streams.kafka.clients import new_consumer, reached, watermarks
from streams.worker.state.keys import HISTORY_MARK, OFFSETS_PREFIX
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK, retail_workload


def ledger_keys(deployment: Deployment) -> list[str]:
    return [f"{v['channel']}:{v['event_id']}" for _, v, _, _ in deployment.read(deployment.registry.ledger.name)]


def count_uncommitted_too(deployment: Deployment, topic: str) -> int:
    """How many records a read_uncommitted reader finds in `topic` (aborted transactions included)."""
    consumer = new_consumer(deployment.bootstrap, f"dirty-{time.monotonic_ns()}",
                            **{"isolation.level": "read_uncommitted"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: watermarks(consumer, TopicPartition(topic, p))[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        seen = 0
        deadline = time.monotonic() + 60
        while not reached(consumer, topic, ends):
            assert time.monotonic() < deadline
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen += 1
        return seen
    finally:
        consumer.close()


def test_a_worker_killed_between_writing_and_committing_loses_and_doubles_nothing(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    first = deployment.start_worker("first", env={"STOCKSYNC_CRASH_BEFORE_COMMIT": "10", "STOCKSYNC_MAX_BATCH": "20"})
    deployment.send(retail_workload(6_000, skus=120, seed=21, expiring_after_ms=30_000), pack=10)
    assert first.proc.wait(120) == 86, first.log.read_text()[-3000:]
    assert "exiting with a transaction written but not committed" in first.log.read_text()
    # Its last transaction reached the broker (a reader of uncommitted records sees more than a committed one):
    # each batch transaction writes the partition's input offsets to the stock table's changelog.
    changelog = deployment.registry.stock_changelog.name
    assert count_uncommitted_too(deployment, changelog) > len(deployment.read(changelog))
    deployment.start_worker("second")
    deployment.settle()

    stocks, _ = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    assert set(deployment.sent) <= set(ledger_keys(deployment))  # replay_ledger: and each once


def test_a_paused_worker_is_fenced_and_writes_nothing_stale(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    paused = deployment.start_worker("paused")
    movements = retail_workload(12_000, skus=150, seed=8, expiring_after_ms=3_600_000)
    deployment.send(movements[:8_000], pack=10)
    wait_for(lambda: len(deployment.read(deployment.registry.positions.name)) > 300, 60, "processing to start")
    paused.proc.send_signal(signal.SIGSTOP)  # mid-stream: a batch in hand
    try:
        other = deployment.start_worker("other")
        wait_for(lambda: other.status().get("assigned_partitions") == list(range(deployment.partitions)), 90,
                 "the other worker to own every partition")
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    deployment.send(movements[8_000:], pack=10)  # the woken worker still has its batch and reads on
    wait_for(lambda: "fenced (another worker has taken the partition over" in paused.log.read_text(), 60,
             "the woken worker to find itself fenced")
    deployment.settle()

    registry = deployment.registry
    changelog = [(key, value) for key, value, _, _ in deployment.read(registry.stock_changelog.name)
                 if key is not None and not key.startswith(OFFSETS_PREFIX) and HISTORY_MARK not in key]  # heads
    last: dict[bytes, int] = {}
    stale = []
    for key, value in changelog:
        if value["version"] < last.get(key, -1):
            stale.append(f"{key!r}: {last[key]} -> {value['version']}")
        last[key] = value["version"]
    assert stale == []
    assert deployment.versions_going_back(registry.positions.name) == []
    for channel in ("web", "market"):
        assert deployment.versions_going_back(registry.ats(channel).name) == []
    stocks, _ = deployment.replay_ledger()  # no ledger entry forked: each is there once
    deployment.assert_outputs_match(stocks)


def test_a_record_the_broker_refuses_isolates_its_message(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1")
    feed = deployment.registry.ats("pos-1").name

    def limit(max_bytes: str, op: Any = AlterConfigOpType.SET) -> None:
        resource = ConfigResource(ConfigResource.Type.TOPIC, feed, incremental_configs=[
            ConfigEntry("max.message.bytes", max_bytes, incremental_operation=op)])
        for future in deployment.admin.incremental_alter_configs([resource]).values():
            future.result(30)

    # From now on the broker refuses records to pos-1's feed (pos-1 sells from s1) of over ~200 bytes: those of
    # SKUs with long names. Control records (transaction markers, ~80 bytes) still fit.
    limit("200")
    at = int(time.time() * 1000) - 60_000
    refused = [Movement(Kind.RECEIPT, f"s1-{i}", "wms", f"SKU-S{i}-".ljust(64, "x"), "s1", 5, at + i) for i in range(3)]
    taken = [Movement(Kind.RECEIPT, f"ok-{i}", "wms", f"SKU-{i}", location, 5, at + i)
             for i, location in enumerate(["s1", "w1", "s1"])]
    deployment.send([m for pair in zip(refused, taken, strict=True) for m in pair], pack=1, record=False)
    deployment.send_applied(taken)

    wait_for(lambda: len(deployment.read(deployment.registry.deadletter.name)) == 3, 60, "three dead letters")
    letters = [v for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)]
    assert {v["reason"] for v in letters} == {"unwritable"}
    assert all(feed in str(v["detail"]) and "too large" in str(v["detail"]).lower() for v in letters), letters
    assert sorted(v["key"] for v in letters) == sorted(m.sku.encode() for m in refused)
    stocks, _ = deployment.replay_ledger()
    assert sorted(stocks) == [m.sku for m in taken]
    assert worker.ready()
    assert "reading the inputs failed" not in worker.log.read_text()
    # Once the broker takes them again, the same SKUs at s1 are applied as usual.
    limit("", AlterConfigOpType.DELETE)
    again = [Movement(Kind.RECEIPT, f"s1-again-{i}", "wms", m.sku, "s1", 2, at + 10 + i) for i, m in enumerate(refused)]
    deployment.send_applied(again)
    stocks, _ = deployment.replay_ledger()
    assert [stocks[m.sku].position("s1").on_hand for m in again] == [2, 2, 2]
    assert {key for key, _, _, _ in deployment.read(feed)} == {m.sku.encode() for m in refused + taken
                                                                if m.location == "s1"}


def test_a_partition_whose_producer_is_fenced_is_written_again_after_the_rebalance_it_asks_for(
        deployment: Deployment) -> None:
    """Alone in its group, a worker whose partition producer is fenced by something else than another worker
    (here the test itself takes the transactional id, as a broker fault can leave a producer unusable) must not
    wait for a rebalance nobody else will cause: it asks for one, fences afresh, recovers and goes on."""
    from streams.kafka.clients import new_transactional_producer
    from streams.wire.partitioner import sku_partition

    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("alone")
    at = int(time.time() * 1000)
    sku = next(f"SKU-F{i}" for i in range(1000) if sku_partition(f"SKU-F{i}", deployment.partitions) == 0)
    deployment.send_applied([Movement(Kind.RECEIPT, "f-1", "wms", sku, "w1", 10, at)])
    usurper = new_transactional_producer(deployment.kafka, f"{deployment.settings.app_id}-stock-0")
    usurper.init_transactions(30)  # the worker's producer of partition 0 is fenced from now on
    deployment.send_applied([Movement(Kind.SALE, "f-2", "pos-1", sku, "s1", 1, at + 1),
                             Movement(Kind.RECEIPT, "f-3", "wms", sku, "w1", 5, at + 2)], timeout_s=90)
    log = worker.log.read_text()
    assert "fenced" in log and "asking the workers to rebalance" in log
    deployment.settle()
    stocks, _ = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    assert stocks[sku].position("w1").on_hand == 15
