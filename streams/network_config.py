"""The network as data: read a YAML file, publish it to the network topic, and read the one in force."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streams.domain import Network, NetworkError
from streams.errors import ConfigError
from streams.records import network_from_record, network_to_record
from streams.serde import DecodeError, default_codec
from streams.topics import TopicRegistry

NETWORK_KEY = b"network"
SCHEMA = "stocksync.NetworkConfig"


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


def publish_network(bootstrap_servers: str, registry: TopicRegistry, network: Network) -> int:
    """Write the network to its compacted topic; returns its offset (the network's version)."""
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    delivered: list[int] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg.offset())  # type: ignore[attr-defined]

    value = default_codec().encode(SCHEMA, network_to_record(network, int(time.time() * 1000)))
    producer.produce(registry.network.name, key=NETWORK_KEY, value=value, partition=0, on_delivery=on_delivery)
    producer.flush(30)
    if errors or not delivered:
        raise ConfigError(f"could not publish the network: {errors[0] if errors else 'no delivery report'}")
    return delivered[0]


def read_network(bootstrap_servers: str, registry: TopicRegistry, timeout_s: float = 30.0
                 ) -> tuple[Network, int] | None:
    """The network in force (the last valid record of the network topic) and its offset, or None if none yet."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "stocksync-network-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        tp = TopicPartition(registry.network.name, 0)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        except KafkaException as exc:
            raise ConfigError(f"cannot read {registry.network.name}: {exc.args[0].str()}") from None
        if high <= low:
            return None
        consumer.assign([TopicPartition(registry.network.name, 0, low)])
        found: tuple[Network, int] | None = None
        deadline = time.monotonic() + timeout_s
        position = low
        while position < high and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            position = msg.offset() + 1
            parsed = parse_network_record(msg.value())
            if parsed is not None:
                found = (parsed, msg.offset())
        return found
    finally:
        consumer.close()


def parse_network_record(value: bytes | None) -> Network | None:
    """A network record, or None for a tombstone or a record that does not decode or validate."""
    if value is None:
        return None
    try:
        return network_from_record(default_codec().decode_as(value, SCHEMA)[1])
    except (DecodeError, NetworkError):
        return None
