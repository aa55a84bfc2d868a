"""Every transfer suggestion in force, for the API: the compacted suggestions topic read whole by every worker (a
suggestion is made by the SKU's owner, but a location's list spans every SKU, so any worker must answer it)."""

from __future__ import annotations

import logging
from typing import Any

from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.schemas import Schema
from streams.worker.reference.compacted import CompactedTopicFollower

log = logging.getLogger("stocksync.worker")


class SuggestionIndex(CompactedTopicFollower):
    def __init__(self, servers: Kafka, registry: TopicRegistry, codec: SingleObjectCodec) -> None:
        super().__init__(servers, registry.transfer_suggestions)
        self.codec = codec
        self.by_key: dict[bytes, dict[str, Any]] = {}

    def take(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.by_key.pop(key, None)
            return
        try:
            self.by_key[key] = self.codec.decode_as(value, Schema.TRANSFER_SUGGESTION)[1]
        except DecodeError as exc:
            log.warning("ignoring a transfer suggestion that does not decode: %s", exc)

    def for_sku(self, sku: str) -> list[dict[str, Any]]:
        return sorted((s for s in self.by_key.values() if s["sku"] == sku), key=lambda s: s["destination"])

    def for_location(self, location: str) -> list[dict[str, Any]]:
        """Suggestions to and from a location (its role in each: destination or source)."""
        found = [{**s, "role": "destination" if s["destination"] == location else "source"}
                 for s in self.by_key.values() if location in (s["destination"], s["source"])]
        return sorted(found, key=lambda s: (s["role"], s["sku"]))
