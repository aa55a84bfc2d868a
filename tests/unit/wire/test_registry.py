"""The Schema Registry wire format against confluent-kafka's own serializers and its in-process (mock://) registry:
the same bytes as Confluent's AvroSerializer, both formats read, unknown or foreign ids refused with a reason,
other versions read by schema resolution, the worker's own records left single-object."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.domain import Kind, Movement
from streams.errors import ConfigError
from streams.kafka.schema_registry import (
    RegistryCodec,
    RegistryRefused,
    RegistryUnavailable,
    codec_for,
    registry_compatibility,
    registry_subjects,
)
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from streams.wire.codec import MARKER, DecodeError, SingleObjectCodec
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema, load_history, load_schemas, resolution_problems

_names = itertools.count()
CONTEXT = SerializationContext("stocksync.channel.web.sales", MessageField.VALUE)


def a_movement(event_id: str = "e-1") -> dict[str, Any]:
    return movement_to_record(Movement(Kind.SALE, event_id, "web", "SKU-1", "s1", 2, 1_700_000_000_000))


def fresh_codec(auto_register: bool = True) -> RegistryCodec:
    settings = load_settings(schema_registry_url=f"mock://unit-{next(_names)}",
                             schema_registry_auto_register=auto_register)
    codec = codec_for(settings)
    assert isinstance(codec, RegistryCodec)
    return codec


def confluent_serializer(codec: RegistryCodec, schema: dict[str, Any] | str
                         ) -> Callable[[dict[str, Any], SerializationContext], bytes]:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    serialize = AvroSerializer(codec.client, text, conf={"subject.name.strategy": record_subject_name_strategy})

    def written(record: dict[str, Any], context: SerializationContext) -> bytes:
        value = serialize(record, context)
        assert isinstance(value, bytes)
        return value

    return written


def test_written_as_confluents_serializer_writes_and_read_by_its_deserializer() -> None:
    codec = fresh_codec()
    record = a_movement()
    ours = codec.encode(Schema.MOVEMENT, record)
    theirs = confluent_serializer(codec, codec.schema_text(Schema.MOVEMENT))(record, CONTEXT)
    assert ours == theirs and ours[0] == 0
    assert AvroDeserializer(codec.client)(ours, CONTEXT) == record
    assert codec.decode(theirs) == (Schema.MOVEMENT, record)
    # registered under the record's full name (RecordNameStrategy)
    assert codec.client.lookup_schema("stocksync.Movement", RegistrySchema(codec.schema_text(Schema.MOVEMENT),
                                                                           "AVRO")).schema_id == \
        int.from_bytes(ours[1:5], "big")


def test_both_formats_are_read_and_the_workers_own_records_stay_single_object() -> None:
    codec = fresh_codec()
    record = a_movement()
    single = SingleObjectCodec().encode(Schema.MOVEMENT, record)
    assert codec.decode(single) == (Schema.MOVEMENT, record)
    offsets = {"partition": 3, "next_offsets": {"t": 7}}
    assert codec.encode(Schema.INPUT_OFFSETS, offsets)[:2] == MARKER
    assert codec.encode(Schema.ORDER_STEP_BATCH, {"steps": []})[:2] == MARKER


def test_the_registered_records_are_exactly_those_channels_and_operators_meet() -> None:
    registry = TopicRegistry(load_settings())
    on_shared_topics = {spec.value_schema for spec in registry.all(["web"])
                        if spec.name not in (registry.stock_changelog.name, registry.order_steps.name)}
    also_carried = {Schema.MOVEMENT, Schema.ORDER_REQUEST, Schema.ORDER_DECISION}  # beside a topic's main record
    assert set(registry_subjects()) == on_shared_topics | also_carried
    assert all(subject == name for name, subject in registry_subjects().items())
    codec = fresh_codec()
    assert set(codec.prepare()) == set(registry_subjects())


def test_full_transitive_compatibility_holds_for_every_kept_version() -> None:
    """Each subject is set to FULL_TRANSITIVE: every version ever published reads every other, both ways."""
    assert registry_compatibility() == "FULL_TRANSITIVE"
    current, history = load_schemas(), load_history()
    for name in registry_subjects():
        versions = [current[name], *history.get(name, [])]
        for writer, reader in itertools.permutations(versions, 2):
            assert resolution_problems(writer, reader) == [], name


def test_an_id_the_registry_does_not_know_is_refused_and_remembered() -> None:
    codec = fresh_codec()
    data = b"\x00" + (4242).to_bytes(4, "big") + b"\x02"
    assert codec.unlearned([data, None, b"\xc3\x01"]) == {4242}
    with pytest.raises(DecodeError) as refused:
        codec.decode(data)
    assert refused.value.reason == "unknown_schema" and "4242" in str(refused.value)
    assert codec.unlearned([data]) == set()  # not asked again


def test_a_record_stocksync_does_not_read_is_refused() -> None:
    codec = fresh_codec()
    other = {"type": "record", "name": "Thing", "namespace": "com.acme", "fields": [{"name": "x", "type": "long"}]}
    data = confluent_serializer(codec, other)({"x": 1}, CONTEXT)
    with pytest.raises(DecodeError) as refused:
        codec.decode(data)
    assert refused.value.reason == "unknown_schema" and "com.acme.Thing" in str(refused.value)


def test_another_version_of_a_record_is_read_by_schema_resolution() -> None:
    codec = fresh_codec()
    newer = json.loads(codec.schema_text(Schema.MOVEMENT))
    newer["fields"].append({"name": "listing_id", "type": ["null", "string"], "default": None})
    data = confluent_serializer(codec, newer)({**a_movement(), "listing_id": "MKT-1"}, CONTEXT)
    assert codec.decode(data) == (Schema.MOVEMENT, a_movement())  # the new field skipped

    broken = copy.deepcopy(newer)
    broken["fields"] = [f for f in broken["fields"] if f["name"] != "listing_id"]
    broken["fields"].append({"name": "tenant", "type": "string"})  # no default: the worker cannot read it
    for field in broken["fields"]:
        if field["name"] == "quantity":
            field["type"] = "string"
    record = {**a_movement(), "quantity": "two", "tenant": "t"}
    data = b"\x00" + codec.client.register_schema("stocksync.Other", RegistrySchema(json.dumps(broken), "AVRO")
                                                  ).to_bytes(4, "big") + _body(broken, record)
    with pytest.raises(DecodeError) as refused:
        codec.decode(data)
    assert refused.value.reason == "schema_violation" and "quantity" in str(refused.value)


def _body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    import io

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_without_registering_a_schema_not_registered_is_a_deployment_error() -> None:
    codec = fresh_codec(auto_register=False)
    with pytest.raises(RegistryRefused) as refused:
        codec.encode(Schema.ATS_UPDATE, {})
    assert "stocksync.AtsUpdate" in str(refused.value) and "stocksync schemas register" in str(refused.value)


def test_a_registry_out_of_reach_is_unavailable_not_a_bad_record() -> None:
    codec = codec_for(load_settings(schema_registry_url="http://127.0.0.1:9",
                                    schema_registry_config={"max.retries": 0, "timeout": 2}))
    assert isinstance(codec, RegistryCodec)
    with pytest.raises(RegistryUnavailable, match="the schema registry at http://127.0.0.1:9 did not answer"):
        codec.learn(7)
    assert codec.unlearned([b"\x00\x00\x00\x00\x07"]) == {7}  # asked again later
    with pytest.raises(RegistryUnavailable):
        codec.prepare()


def test_bad_registry_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="STOCKSYNC_SCHEMA_REGISTRY_URL"):
        load_settings(schema_registry_url="registry:8081")
    with pytest.raises(ConfigError, match="STOCKSYNC_SCHEMA_REGISTRY_USER and STOCKSYNC_SCHEMA_REGISTRY_PASSWORD"):
        load_settings(schema_registry_url="https://r:8081", schema_registry_user="u").schema_registry()
    config = load_settings(schema_registry_url="https://r:8081", schema_registry_user="u",
                           schema_registry_password="p").schema_registry()
    assert config == {"url": "https://r:8081", "basic.auth.user.info": "u:p"}
    with pytest.raises(ConfigError, match="STOCKSYNC_SCHEMA_REGISTRY_CONFIG"):
        codec_for(load_settings(schema_registry_url="https://r:8081", schema_registry_config={"no.such": 1}))
