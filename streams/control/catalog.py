"""The catalog as data: read and validate a CSV or YAML file of aliases, make the catalog topic hold exactly it
(new and changed entries written, removed ones tombstoned), read the one in force."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import yaml

from streams.domain import Network
from streams.domain.catalog import ANY_CHANNEL, CatalogEntry, CatalogError, catalog_entry
from streams.errors import ConfigError
from streams.kafka.clients import assign_all, new_consumer, new_producer, produce, reached, reader_group
from streams.kafka.schema_registry import codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.wire.codec import DecodeError
from streams.wire.schemas import Schema

COLUMNS = ("channel", "alias", "sku")


def load_catalog_file(path: Path, network: Network) -> list[CatalogEntry]:
    """Every entry of a CSV (header: channel, alias, sku) or YAML (a list of {channel, alias, sku}) file; a
    ConfigError naming the file, the line or item, and the field for the first wrong one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    rows: list[tuple[str, dict[str, Any]]]
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or []
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        items = data.get("aliases", []) if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ConfigError(f"{path}: expected a list of {{channel, alias, sku}} (or 'aliases:' with one)")
        rows = [(f"item {i + 1}", item) for i, item in enumerate(items)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: the header lacks {missing} (it needs {', '.join(COLUMNS)})")
        rows = [(f"line {reader.line_num}", dict(row)) for row in reader]
    entries: dict[tuple[str, str], CatalogEntry] = {}
    for where, row in rows:
        try:
            entry = catalog_entry(str(row.get("channel") or ANY_CHANNEL), str(row.get("alias") or ""),
                                  str(row.get("sku") or ""), where)
        except CatalogError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if entry.channel != ANY_CHANNEL and entry.channel not in network.channels:
            raise ConfigError(f"{path}: {where}: channel {entry.channel!r} is not in the network")
        earlier = entries.get((entry.channel, entry.alias))
        if earlier is not None and earlier.sku != entry.sku:
            raise ConfigError(f"{path}: {where}: alias {entry.alias!r} of {entry.channel} names {earlier.sku} "
                              f"already, not {entry.sku}")
        entries[(entry.channel, entry.alias)] = entry
    return list(entries.values())


def read_catalog(servers: Kafka, registry: TopicRegistry, timeout_s: float = 120.0) -> dict[str, CatalogEntry]:
    """The catalog in force, by key ("<channel>|<alias>")."""
    topic, codec = registry.catalog.name, codec_for(registry.settings)
    consumer = new_consumer(servers, reader_group(topic))
    found: dict[str, CatalogEntry] = {}
    try:
        ends = assign_all(consumer, topic, from_beginning=True)
        deadline = time.monotonic() + timeout_s
        while not reached(consumer, topic, ends):
            if time.monotonic() > deadline:
                raise ConfigError(f"could not read {topic} to its end in {timeout_s:.0f} s")
            message = consumer.poll(0.5)
            if message is None or message.error() is not None or message.key() is None:
                continue
            key, value = (message.key() or b"").decode(), message.value()
            if value is None:
                found.pop(key, None)
                continue
            try:
                record = codec.decode_as(value, Schema.CATALOG_ENTRY)[1]
            except DecodeError:
                continue
            found[key] = CatalogEntry(record["channel"], record["alias"], record["sku"])
    finally:
        consumer.close()
    return found


def apply_catalog(servers: Kafka, registry: TopicRegistry, entries: list[CatalogEntry]) -> tuple[int, int, int]:
    """Make the catalog topic hold exactly `entries`; returns (added or changed, removed, unchanged)."""
    current = read_catalog(servers, registry)
    wanted = {entry.key: entry for entry in entries}
    codec, now = codec_for(registry.settings), int(time.time() * 1000)
    producer = new_producer(servers, **{"linger.ms": 20})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    changed = [entry for key, entry in wanted.items() if current.get(key) != entry]
    removed = [key for key in current if key not in wanted]
    for entry in changed:
        produce(producer, registry.catalog.name, codec.encode(Schema.CATALOG_ENTRY, {
            "channel": entry.channel, "alias": entry.alias, "sku": entry.sku, "applied_at": now}),
            entry.key.encode(), None, delivered)
    for key in removed:
        produce(producer, registry.catalog.name, None, key.encode(), None, delivered)
    producer.flush(60)
    if errors:
        raise ConfigError(f"could not write the catalog: {errors[0]} ({len(errors)} records refused)")
    return len(changed), len(removed), len(wanted) - len(changed)
