"""The network as data: read and validate a YAML file, publish it to the network topic, read the one in force."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from streams.domain import Network, NetworkError
from streams.errors import ConfigError
from streams.kafka.clients import (
    KafkaException,
    TopicPartition,
    explain_failure,
    new_consumer,
    new_producer,
    produce,
    reader_group,
)
from streams.kafka.schema_registry import codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.wire.codec import DecodeError, SingleObjectCodec, default_codec
from streams.wire.records import network_from_record, network_to_record
from streams.wire.schemas import Schema

NETWORK_KEY = b"network"


def load_network_file(path: Path) -> Network:
    """Parse and validate a network YAML file; any problem is a ConfigError naming the file and the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    try:
        return Network.from_dict(data if data is not None else {})
    except NetworkError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def publish_network(bootstrap_servers: Kafka, registry: TopicRegistry, network: Network) -> int:
    """Write the network to its compacted topic; returns its offset (the network's version)."""
    producer = new_producer(bootstrap_servers)
    delivered: list[int] = []
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.offset())

    record = network_to_record(network, int(time.time() * 1000))
    value = codec_for(registry.settings).encode(Schema.NETWORK_CONFIG, record)
    produce(producer, registry.network.name, value, NETWORK_KEY, 0, on_delivery)
    producer.flush(30)
    if errors or not delivered:
        raise ConfigError(f"could not publish the network: {errors[0] if errors else 'no delivery report'}")
    return delivered[0]


def read_network(bootstrap_servers: Kafka, registry: TopicRegistry, timeout_s: float = 30.0
                 ) -> tuple[Network, int] | None:
    """The network in force (the last valid record of the network topic) and its offset, or None if none yet."""
    consumer = new_consumer(bootstrap_servers, reader_group(registry.network.name),
                            **{"auto.offset.reset": "earliest"})
    try:
        tp = TopicPartition(registry.network.name, 0)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        except KafkaException as exc:
            raise ConfigError(f"cannot read {registry.network.name}: {explain_failure(exc, consumer)}") from None
        if high <= low:
            return None
        consumer.assign([TopicPartition(registry.network.name, 0, low)])
        found: tuple[Network, int] | None = None
        deadline = time.monotonic() + timeout_s
        position = low
        while position < high and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            offset = None if msg is None or msg.error() else msg.offset()
            if msg is None or offset is None:
                continue
            position = offset + 1
            parsed = parse_network_record(msg.value(), codec_for(registry.settings))
            if parsed is not None:
                found = (parsed, offset)
        return found
    finally:
        consumer.close()


def parse_network_record(value: bytes | None, codec: SingleObjectCodec | None = None) -> Network | None:
    """A network record, or None for a tombstone or a record that does not decode or validate."""
    if value is None:
        return None
    try:
        return network_from_record((codec or default_codec()).decode_as(value, Schema.NETWORK_CONFIG)[1])
    except (DecodeError, NetworkError):
        return None
