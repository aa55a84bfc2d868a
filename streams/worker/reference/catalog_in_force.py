"""The catalog in force in a worker: the compacted catalog topic followed whole, as a domain Catalog."""

from __future__ import annotations

import logging

from streams.domain.catalog import Catalog, CatalogEntry
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.schemas import Schema
from streams.worker.reference.compacted import CompactedTopicFollower

log = logging.getLogger("stocksync.worker")


class CatalogInForce(CompactedTopicFollower):
    """The inputs are read only once it has caught up (a known alias must never be taken for an unknown one)."""

    def __init__(self, servers: Kafka, registry: TopicRegistry, codec: SingleObjectCodec) -> None:
        super().__init__(servers, registry.catalog)
        self.codec = codec
        self.catalog = Catalog()

    def take(self, key: bytes, value: bytes | None) -> None:
        channel, _, alias = key.decode(errors="replace").partition("|")
        if value is None:
            self.catalog.remove(channel, alias)
            return
        try:
            record = self.codec.decode_as(value, Schema.CATALOG_ENTRY)[1]
        except DecodeError as exc:
            log.warning("ignoring a catalog record that does not decode: %s", exc)
            return
        self.catalog.put(CatalogEntry(record["channel"], record["alias"], record["sku"]))
