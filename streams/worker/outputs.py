"""The worker's outputs: one confluent-kafka producer, and the outbox a batch fills and delivers at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaException

from streams.kafka.clients import new_producer, offer, produce_async
from streams.worker import metrics

log = logging.getLogger("stocksync.worker")

# (topic, key, value, partition); partition None: the murmur2 partitioner chooses by key.
OutputRecord = tuple[str, bytes, bytes | None, int | None]


class Outbox(Protocol):
    """Where a batch's output records go; nothing is sent before the batch's state is written."""

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None: ...


class OutputProducer:
    """The worker's output producer: confluent-kafka (librdkafka) with the project's settings. Producing a record
    costs a few microseconds instead of aiokafka's tens, and outputs are most of a batch's work. No compression:
    aiokafka (faust's changelog consumer and the input reader) lacks lz4 and snappy."""

    def __init__(self, servers: str) -> None:
        self.producer = new_producer(servers, **{"linger.ms": 0, "queue.buffering.max.messages": 1_000_000})
        self.errors: list[str] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")

    async def send_all(self, records: Sequence[OutputRecord]) -> None:
        """Produce the records and return once the broker has every one (retrying while it is unreachable)."""
        for topic, key, value, partition in records:
            try:
                if not offer(self.producer, topic, value, key, partition, self._delivered):  # the queue is full
                    await produce_async(self.producer, topic, value, key, partition, self._delivered)
            except KafkaException as exc:  # refused before it was sent (e.g. over message.max.bytes): never retried
                self.errors.append(f"{topic}: {exc.args[0]}")
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, self.producer.flush, 10.0):
            log.warning("outputs not yet delivered after 10 s; still trying")
        if self.errors:
            errors, self.errors = self.errors, []
            metrics.OUTPUT_ERRORS.inc(len(errors))
            log.error("%d output records were refused, e.g. %s", len(errors), errors[0])


class ProducerOutbox:
    """Collects output records; `deliver` sends them and waits until the broker has them all."""

    def __init__(self, producer: OutputProducer) -> None:
        self.producer = producer
        self.records: list[OutputRecord] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    async def deliver(self) -> None:
        records, self.records = self.records, []
        if records:
            await self.producer.send_all(records)
