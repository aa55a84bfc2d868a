"""A deployment with a Schema Registry, end to end on the real broker: channels writing with confluent-kafka's own
Avro serializer (Confluent framing, RecordNameStrategy) and with the stocksync SDK, a worker reading both framings
and writing every channel-facing output in the registry's, read back with confluent-kafka's own deserializer.

The registry is tests/integration/schema_registry.py over HTTP (no registry server installs here); where a Docker
engine answers, the same tests run against a real registry container as well."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.channel import ChannelClient
from streams.domain import Kind, Movement, Network, SkuStock, channel_ats
from streams.kafka.schema_registry import RegistryCodec, codec_for, registry_subjects
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import SingleObjectCodec
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.schema_registry import SchemaRegistryServer
from tests.integration.workload import NETWORK

pytestmark = pytest.mark.integration


def _container_registry(kafka_internal: str) -> Iterator[str]:
    """A real Schema Registry container (testcontainers) beside the broker, where a Docker engine answers."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = (DockerContainer("confluentinc/cp-schema-registry:7.9.0")
                 .with_env("SCHEMA_REGISTRY_HOST_NAME", "registry")
                 .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", kafka_internal)
                 .with_exposed_ports(8081))
    with container:
        wait_for_logs(container, "Server started", timeout=120)
        yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8081)}"


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean no container
        return False


@dataclass
class Registry:
    url: str
    server: SchemaRegistryServer | None  # None: a real registry (a container)


@pytest.fixture(scope="module", params=["in-process", "container"])
def schema_registry(request: pytest.FixtureRequest, bootstrap: str) -> Iterator[Registry]:
    if request.param == "container":
        if not _docker_answers():
            pytest.skip("no Docker engine answers here: the real registry container cannot start")
        for url in _container_registry(bootstrap):
            yield Registry(url, None)
        return
    server = SchemaRegistryServer().start()
    yield Registry(server.url, server)
    server.stop()


@pytest.fixture
def registered(deployment: Deployment, schema_registry: Registry) -> Deployment:
    """The deployment, set to write through the registry (its settings, its harness's codec, its workers)."""
    deployment.settings = deployment.settings.model_copy(update={"schema_registry_url": schema_registry.url})
    deployment.registry = TopicRegistry(deployment.settings)
    deployment.codec = codec_for(deployment.settings)
    deployment.apply_network(NETWORK)
    return deployment


def worker_env(registry: Registry) -> dict[str, str]:
    return {"STOCKSYNC_SCHEMA_REGISTRY_URL": registry.url}


def serializer(registry: Registry, schema: dict[str, Any]) -> Callable[[dict[str, Any], SerializationContext], bytes]:
    """What a channel's service writes with: confluent-kafka's Avro serializer, a subject per record type."""
    serialize = AvroSerializer(SchemaRegistryClient({"url": registry.url}), json.dumps(schema),
                               conf={"subject.name.strategy": record_subject_name_strategy})

    def written(record: dict[str, Any], context: SerializationContext) -> bytes:
        value = serialize(record, context)
        assert isinstance(value, bytes)
        return value

    return written


def movement_schema(codec: SingleObjectCodec, *extra_fields: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(codec, RegistryCodec)
    schema: dict[str, Any] = json.loads(codec.schema_text(Schema.MOVEMENT))
    schema["fields"] += list(extra_fields)
    return schema


def receipt(event_id: str, sku: str, quantity: int) -> Movement:
    return Movement(Kind.RECEIPT, event_id, "wms", sku, "s1", quantity, int(time.time() * 1000))


def ledgered(deployment: Deployment, *event_ids: str) -> bool:
    have = {v["event_id"] for _, v, _, _ in deployment.read(deployment.registry.ledger.name)}
    return set(event_ids) <= have


def test_channels_in_either_framing_and_every_output_in_the_registrys(registered: Deployment,
                                                                         schema_registry: Registry) -> None:
    deployment, registry = registered, registered.registry
    deployment.start_worker("one", env=worker_env(schema_registry))
    network = Network.from_dict(NETWORK)
    stocks = {sku: SkuStock(sku) for sku in ("SR-1", "SR-2")}

    def sent(movement: Movement) -> Movement:
        stocks[movement.sku].apply(movement, network, int(time.time() * 1000))
        return movement

    # A Java/Go/.NET channel: confluent-kafka's serializer, with a newer version of Movement of its own.
    newer = movement_schema(deployment.codec, {"name": "listing_id", "type": ["null", "string"], "default": None})
    restock = registry.restock("wms").name
    value = serializer(schema_registry, newer)({**movement_to_record(sent(receipt("r-conf", "SR-1", 10))),
                                                "listing_id": "MKT-1"},
                                               SerializationContext(restock, MessageField.VALUE))
    assert value[0] == 0
    deployment.send_raw(restock, b"SR-1", value)
    # An older channel client: single-object encoding, no registry.
    deployment.send_raw(restock, b"SR-2", SingleObjectCodec().encode(
        Schema.MOVEMENT, movement_to_record(sent(receipt("r-single", "SR-2", 4)))))
    # A record whose schema id the registry does not know.
    unknown = b"\x00" + (987654).to_bytes(4, "big") + b"\x02"
    deployment.send_raw(restock, b"SR-3", unknown)
    wait_for(lambda: ledgered(deployment, "r-conf", "r-single"), 60, "both receipts applied")

    # The SDK through the registry: its sale is framed, so is its reservation's decision.
    with ChannelClient("pos-1", deployment.bootstrap, settings=deployment.settings) as pos, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings) as web:
        sent(pos.sale("SR-1", "s1", 1, event_id="s-sdk"))
        pos.flush()
        decision = web.reserve("SR-1", 3, reservation_id="hold-1", location="s1", timeout_s=60)
        assert decision.accepted, decision
        now = int(time.time() * 1000)
        sent(Movement(Kind.RESERVATION_PLACED, "reserve:hold-1", "web", "SR-1", "s1", 3, now,
                      reservation_id="hold-1", expires_at=now + 900_000))
        feed = web.subscribe_ats(lambda update: None)
        assert feed.wait_caught_up(30)
        expected = {sku: channel_ats(stock, network.channels["web"]) for sku, stock in stocks.items()}
        wait_for(lambda: {sku: feed.ats(sku) for sku in expected} == expected, 30, f"the web feed at {expected}")
        feed.stop()

    # Every channel-facing output is in the registry's framing, and confluent-kafka's deserializer reads it.
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry.url}))

    def read(topic: str) -> list[dict[str, Any]]:
        values = deployment.read_raw(topic)
        assert values and all(v[0] == 0 for v in values), f"{topic}: a record not in the registry's framing"
        return [deserializer(v, SerializationContext(topic, MessageField.VALUE)) for v in values]

    assert {r["sku"]: r["ats"] for r in read(registry.ats("web").name)} == expected
    assert [r["accepted"] for r in read(registry.replies("web").name)] == [True]
    assert {r["event_id"] for r in read(registry.ledger.name)} == {"r-conf", "r-single", "s-sdk", "reserve:hold-1"}
    assert {r["sku"] for r in read(registry.positions.name)} == {"SR-1", "SR-2"}
    letters = read(registry.deadletter.name)
    assert [(d["reason"], d["value"]) for d in letters] == [("unknown_schema", unknown)]

    if schema_registry.server is not None:  # each record under its own name, FULL_TRANSITIVE
        assert set(registry_subjects()) <= set(schema_registry.server.subjects)
        assert {schema_registry.server.compatibility[s] for s in registry_subjects()} == {"FULL_TRANSITIVE"}


def test_a_registry_out_of_reach_delays_the_records_it_must_explain_and_loses_none(
        registered: Deployment, schema_registry: Registry) -> None:
    """A channel registers a newer version and writes with it; the registry is away before the worker has met that
    id: the batch waits (no dead letter, nothing applied out of order), and goes on once the registry is back."""
    server = schema_registry.server
    if server is None:
        pytest.skip("taking a real registry away is the in-process registry's part of this test")
    deployment = registered
    worker = deployment.start_worker("one", env=worker_env(schema_registry))
    newer = movement_schema(deployment.codec, {"name": "note", "type": ["null", "string"], "default": None})
    schema_id = server.register("stocksync.Movement", newer)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(newer),
                               {**movement_to_record(receipt("r-away", "SR-9", 5)), "note": "pallet 7"})
    restock = deployment.registry.restock("wms").name
    server.stop()
    try:
        deployment.send_raw(restock, b"SR-9", b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue())
        wait_for(lambda: "asking again" in worker.log.read_text(), 60, "the worker to find the registry away")
        assert not ledgered(deployment, "r-away")
        assert deployment.read_raw(deployment.registry.deadletter.name) == []
    finally:
        server.start()
    wait_for(lambda: ledgered(deployment, "r-away"), 60, "the receipt applied once the registry is back")
    assert deployment.read_raw(deployment.registry.deadletter.name) == []
    assert worker.ready()


def test_schemas_register_registers_exactly_the_published_records_and_a_worker_then_only_looks_them_up(
        deployment: Deployment) -> None:
    """Where workers may not register (a platform team registers from its pipeline), `stocksync schemas register`
    does it, and a worker with auto-registration off starts on what it finds; one that finds nothing says so in a
    line and stops."""
    server = SchemaRegistryServer().start()
    try:
        env = {**os.environ, "STOCKSYNC_SCHEMA_REGISTRY_URL": server.url}
        looked_up = {"STOCKSYNC_SCHEMA_REGISTRY_URL": server.url, "STOCKSYNC_SCHEMA_REGISTRY_AUTO_REGISTER": "false"}
        deployment.apply_network(NETWORK)
        refused = deployment.start_worker("unregistered", wait=False, env=looked_up)
        assert refused.proc.wait(120) == 2
        assert "stocksync.AtsUpdate" in refused.log.read_text() and "stocksync schemas register" in \
            refused.log.read_text()

        done = subprocess.run([sys.executable, "-m", "streams.cli", "schemas", "register"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        ids = json.loads(done.stdout)
        assert set(ids) == set(server.subjects) == set(registry_subjects())
        assert {server.subjects[subject][-1] for subject in ids} == set(ids.values())
        before = len(server.requests)
        deployment.start_worker("registered", env=looked_up)
        asked = server.requests[before:]
        assert len([path for method, path in asked if method == "POST"]) == len(ids)  # a lookup per subject
        assert not any(path.endswith("/versions") or method == "PUT" for method, path in asked)  # nothing changed
    finally:
        server.stop()
    away = subprocess.run([sys.executable, "-m", "streams.cli", "schemas", "register"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "STOCKSYNC_SCHEMA_REGISTRY_URL": server.url,
                                                       "STOCKSYNC_SCHEMA_REGISTRY_CONFIG": '{"max.retries": 0}'})
    assert away.returncode == 2 and away.stderr.count("\n") == 1
    assert f"the schema registry at {server.url} did not answer" in away.stderr
