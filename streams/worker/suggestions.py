"""Every transfer suggestion in force, for the API: the compacted suggestions topic read whole by every worker (a
suggestion is made by the SKU's owner, but a location's list spans every SKU, so any worker must answer it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from streams.kafka.clients import new_aio_consumer
from streams.kafka.security import Kafka
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.schemas import Schema

log = logging.getLogger("stocksync.worker")


class SuggestionIndex:
    def __init__(self, servers: Kafka, registry: TopicRegistry, codec: SingleObjectCodec) -> None:
        self.servers, self.registry, self.codec = servers, registry, codec
        self.by_key: dict[bytes, dict[str, Any]] = {}

    async def run(self, should_stop: Callable[[], bool]) -> None:
        """Read the topic from its start, then follow it (committed records only: a batch's suggestions count
        once its transaction does)."""
        topic = self.registry.transfer_suggestions
        consumer = new_aio_consumer(self.servers, group_id=None, isolation_level="read_committed")
        await consumer.start()
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        try:
            while not should_stop():
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    for message in messages:
                        self.take(message.key, message.value)
        finally:
            await consumer.stop()

    def take(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
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
