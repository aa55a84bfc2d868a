"""Standard Avro clients talk to stocksync: Apache Avro's Java BinaryMessageEncoder writes every input a worker
applies (movements and orders), and its BinaryMessageDecoder reads every output the worker writes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.dev.local_kafka import fetch_jars
from streams.domain import Kind, Movement
from streams.domain.order_sourcing import OrderLine
from streams.domain.orders import OrderRequest
from streams.kafka.schema_registry import codec_for
from streams.settings import load_settings
from streams.wire.codec import default_codec
from streams.wire.order_records import order_request_record
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.avro_java import AvroJava, fetch_avro_java
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.schema_registry import SchemaRegistryServer
from tests.integration.workload import NETWORK


@pytest.fixture(scope="session")
def avro_java() -> AvroJava:
    return AvroJava(fetch_avro_java(Path(load_settings().cache_dir)))


def test_every_fingerprint_is_the_one_apache_avro_computes(avro_java: AvroJava) -> None:
    codec = default_codec()
    assert avro_java.fingerprints() == {name: header[2:].hex() for name, header in codec.headers.items()}


def test_java_writes_every_input_and_reads_every_output_of_a_worker(deployment: Deployment,
                                                                    avro_java: AvroJava) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    registry, codec = deployment.registry, default_codec()
    at = int(time.time() * 1000) - 1_000
    receipt = Movement(Kind.RECEIPT, "j-rcpt", "wms", "JAVA-1", "w1", 9, at)
    sales = [Movement(Kind.SALE, "j-sale", "pos-1", "JAVA-1", "s1", 1, at),
             Movement(Kind.RETURN, "j-return", "pos-1", "JAVA-1", "s1", 1, at + 1, resellable=False,
                      reason="damaged"),
             Movement(Kind.RETURN, "j-inspect", "pos-1", "JAVA-1", "s1", 2, at + 1, disposition="inspect",
                      returned_via="post"),
             Movement(Kind.ADJUSTMENT, "j-release", "pos-1", "JAVA-1", "s1", 1, at + 1, state="quality_control",
                      to_state="sellable")]
    request = Movement(Kind.RESERVATION_PLACED, "j-reserve", "web", "JAVA-1", None, 2, at + 2,
                       reservation_id="j-order", expires_at=at + 600_000)
    nowhere = Movement(Kind.RECEIPT, "j-nowhere", "wms", "JAVA-1", "nowhere", 1, at + 3)
    [single] = avro_java.encode(Schema.MOVEMENT, [movement_to_record(receipt)])
    deployment.send_raw(registry.restock("wms").name, b"JAVA-1", single)
    deployment.sent[receipt.key] = receipt
    [packed] = avro_java.encode(Schema.MOVEMENT_BATCH, [{"movements": [movement_to_record(m) for m in sales]}])
    deployment.send_raw(registry.sales("pos-1").name, b"JAVA-1", packed)
    deployment.sent.update({m.key: m for m in sales})
    [reserve, bad] = [avro_java.encode(Schema.MOVEMENT, [movement_to_record(m)])[0] for m in (request, nowhere)]
    deployment.send_raw(registry.sales("web").name, b"JAVA-1", reserve)
    deployment.sent[request.key] = request
    deployment.send_raw(registry.restock("wms").name, b"JAVA-1", bad)
    cart = OrderRequest("j-cart", "web", (OrderLine("1", "JAVA-1", 1),), 52.5, 13.4, expires_at=at + 600_000)
    [order] = avro_java.encode(Schema.ORDER_REQUEST, [order_request_record(cart, at + 4)])
    deployment.send_raw(registry.sales("web").name, b"j-cart", order)  # keyed by the order id
    assert codec.decode(single)[1] == movement_to_record(receipt)  # the same bytes stocksync would write
    wait_for(lambda: len(deployment.read(registry.replies("web").name)) == 2, 60,
             "the reservation's and the order's decisions")
    deployment.settle()

    outputs = {topic: deployment.read_raw(topic) for topic in (
        registry.positions.name, registry.ledger.name, registry.deadletter.name, registry.ats("web").name,
        registry.replies("web").name)}
    for topic, values in outputs.items():
        assert values, f"nothing on {topic}"
        read_by_java = avro_java.decode(values)
        assert read_by_java == [codec.decode(value) for value in values], topic
    ledger = [record["event_id"] for _, record in avro_java.decode(outputs[registry.ledger.name])]
    assert sorted(e for e in ledger if not e.startswith("~order:")) == ["j-inspect", "j-rcpt", "j-release",
                                                                         "j-reserve", "j-return", "j-sale"]
    positions = avro_java.decode(outputs[registry.positions.name])
    figures = {record["location"]: record["figures"] for _, record in positions}  # the last of each
    assert (figures["s1"]["quality_control"], figures["s1"]["damaged"]) == (1, 1)  # as Java reads them
    # a one-line order: its owner planned and held the line in one step
    assert sorted(e.rsplit(":", 1)[1] for e in ledger if e.startswith("~order:j-cart/1/1.")) == ["source"]
    [(_, letter)] = avro_java.decode(outputs[registry.deadletter.name])
    assert (letter["reason"], letter["value"]) == ("unknown_location", bad)
    decisions = dict(avro_java.decode(outputs[registry.replies("web").name]))
    reservation, cart_decision = decisions[Schema.RESERVATION_DECISION], decisions[Schema.ORDER_DECISION]
    assert reservation["accepted"] and reservation["reservation_id"] == "j-order"
    assert cart_decision["accepted"] and [p["location"] for p in cart_decision["parcels"]] == ["w1"]


def test_the_readme_java_channel_reports_a_receipt(deployment: Deployment, avro_java: AvroJava) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    settings = load_settings()
    kafka_libs = fetch_jars(settings.broker_home, settings.kafka_version)  # Kafka's Java client is among them
    avro_java.run_channel_example(kafka_libs, deployment.bootstrap,
                                  deployment.settings.topic_prefix, "JAVA-2", "asn-77/1")
    wait_for(lambda: any(v["event_id"] == "asn-77/1" for _, v, _, _ in
                         deployment.read(deployment.registry.ledger.name)), 60, "the receipt in the ledger")
    [(_, entry, _, _)] = deployment.read(deployment.registry.ledger.name)
    assert (entry["channel"], entry["sku"], entry["status"]) == ("wms", "JAVA-2", "applied")
    assert [c["after"]["on_hand"] for c in entry["changes"]] == [12]



def test_the_guides_java_channel_for_a_schema_registry_reports_a_receipt(deployment: Deployment,
                                                                          avro_java: AvroJava) -> None:
    server = SchemaRegistryServer().start()
    try:
        deployment.apply_network(NETWORK)
        deployment.start_worker("one", env={"STOCKSYNC_SCHEMA_REGISTRY_URL": server.url})
        settings = load_settings()
        kafka_libs = fetch_jars(settings.broker_home, settings.kafka_version)
        avro_java.run_channel_example(kafka_libs, deployment.bootstrap, deployment.settings.topic_prefix, "JAVA-3",
                                      "asn-78/1", registry=server.url)
        restock = deployment.registry.restock("wms").name
        [value] = deployment.read_raw(restock)
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") in server.schemas  # the registry's framing
        deployment.codec = codec_for(deployment.settings.model_copy(update={"schema_registry_url": server.url}))
        wait_for(lambda: any(v["event_id"] == "asn-78/1" for _, v, _, _ in
                             deployment.read(deployment.registry.ledger.name)), 60, "the receipt in the ledger")
    finally:
        server.stop()
