"""The local three-node KRaft cluster the fault tests run on: three replicas, a write needs two, and a killed
node comes back on its own port while the others carry on, stocksync workers included."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from streams.dev.local_kafka import LocalCluster
from streams.domain import Kind, Movement
from streams.kafka.clients import new_admin, new_consumer, new_producer, watermarks
from streams.security import Kafka, KafkaConnection
from streams.settings import load_settings
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def partition_zero(servers: Kafka, topic: str) -> Any:
    """The metadata of the topic's partition 0, once every node knows the topic and it has a leader."""
    found: list[Any] = []

    def known() -> bool:
        partitions = new_admin(servers).list_topics(topic, timeout=10).topics[topic].partitions
        found[:] = [partitions[0]] if 0 in partitions and partitions[0].leader >= 0 else []
        return bool(found)

    wait_for(known, 60, f"{topic} known with a leader")
    return found[0]


def leader_of(servers: str, topic: str) -> int:
    return int(partition_zero(servers, topic).leader)


def test_three_replicas_survive_the_leader_s_death(local_cluster: LocalCluster, unique: str) -> None:
    servers = local_cluster.bootstrap_servers
    topic = f"t-{unique}-replicated"
    admin = new_admin(servers)
    for future in admin.create_topics([NewTopic(topic, 1)]).values():
        future.result(30)  # three replicas, min.insync.replicas=2: the cluster's defaults
    assert len(partition_zero(servers, topic).replicas) == 3
    producer = new_producer(servers)
    for i in range(100):
        producer.produce(topic, b"before-%d" % i, b"k")
    assert producer.flush(30) == 0
    leader = leader_of(servers, topic)
    local_cluster.node(leader).kill()
    for i in range(100):
        producer.produce(topic, b"after-%d" % i, b"k")  # two replicas left: enough for acks=all
    assert producer.flush(60) == 0
    wait_for(lambda: leader_of(servers, topic) != leader, 60, "a new leader")
    local_cluster.start_node(leader)  # on its own port again
    assert local_cluster.node(leader).running()
    consumer = new_consumer(servers, f"g-{unique}")
    try:
        tp = TopicPartition(topic, 0)
        assert watermarks(consumer, tp)[1] == 200
    finally:
        consumer.close()


def test_a_worker_goes_on_through_a_broker_s_death(local_cluster: LocalCluster, tmp_path: Path, unique: str) -> None:
    deployment = Deployment(local_cluster.bootstrap_servers, unique, tmp_path, replication_factor=3)
    try:
        deployment.apply_network(NETWORK)
        deployment.start_worker("w1")
        at = int(time.time() * 1000) - 60_000
        deployment.send_applied([Movement(Kind.RECEIPT, f"r{i}", "wms", f"SKU-{i}", "w1", 5, at + i)
                                 for i in range(20)], 120)
        victim = leader_of(local_cluster.bootstrap_servers, deployment.registry.ledger.name)
        local_cluster.node(victim).kill()
        try:
            deployment.send_applied([Movement(Kind.SALE, f"s{i}", "pos-1", f"SKU-{i}", "s1", 1, at + 100 + i)
                                     for i in range(20)] +
                                    [Movement(Kind.RECEIPT, f"r2-{i}", "wms", f"SKU-{i}", "w1", 1, at + 200 + i)
                                     for i in range(20)], 180)
        finally:
            local_cluster.start_node(victim)
        deployment.settle()
        stocks, _ = deployment.replay_ledger()
        deployment.assert_outputs_match(stocks)
        assert all(stocks[f"SKU-{i}"].position("w1").on_hand == 6 for i in range(20))
    finally:
        deployment.stop_all()


def record_outcome(outcomes: dict[str, str | None], who: str, err: Any, _msg: Any) -> None:
    outcomes[who] = err.name() if err else None


def test_a_secured_three_node_cluster_replicates_over_tls_and_authorizes(tmp_path: Path, unique: str) -> None:
    """The nodes talk to each other over SASL_SSL (controllers included) with one CA and one set of users: a topic
    gets three in-sync replicas; a user without ACLs is refused, the admin is not, by certificate or password."""
    settings = load_settings()
    cluster = LocalCluster(home=settings.broker_home, workdir=tmp_path / "cluster", size=3,
                           kafka_version=settings.kafka_version, heap="320m", secure=True).start()
    try:
        admin_kafka = KafkaConnection(cluster.bootstrap_servers, cluster.client_security("admin"))
        topic = f"t-{unique}-secured"
        admin = new_admin(admin_kafka)
        for future in admin.create_topics([NewTopic(topic, 1)]).values():
            future.result(30)
        wait_for(lambda: len(partition_zero(admin_kafka, topic).isrs) == 3, 60, "three in-sync replicas")
        outcomes: dict[str, str | None] = {}
        for who, kafka in (("admin by password", admin_kafka),
                           ("admin by certificate", KafkaConnection(cluster.mtls_bootstrap_servers,
                                                                    cluster.node(1).client_certificate("admin"))),
                           ("stocksync without ACLs", KafkaConnection(cluster.bootstrap_servers,
                                                                      cluster.client_security("stocksync")))):
            producer = new_producer(kafka, **{"message.timeout.ms": 20_000})
            producer.produce(topic, b"v", b"k", on_delivery=functools.partial(record_outcome, outcomes, who))
            producer.flush(30)
        assert outcomes == {"admin by password": None, "admin by certificate": None,
                            "stocksync without ACLs": "TOPIC_AUTHORIZATION_FAILED"}
    finally:
        cluster.stop()
