"""The dead-letter topic: an input (or one movement of it) that cannot be applied goes there with its reason, its
channel and its original bytes; the worker goes on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from streams.kafka.topics import TopicRegistry
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.ops.clock import now_ms
from streams.worker.ops.logs import input_fields, movement_fields
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.outputs import Outbox
from streams.worker.state.records import RecordEncoder

deadletter_log = logging.getLogger("stocksync.deadletters")

# A dead letter's fields other than the input's key and value take at most this much (detail, topic, ...).
DEAD_LETTER_OVERHEAD = 8 * 1024
MAX_DETAIL = 2_000
MAX_DEAD_LETTER_KEY = 1_024


class DeadLetters:
    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder) -> None:
        self.topic, self.encoder = registry.deadletter.name, encoder

    def send(self, outbox: Outbox, message: Inbound, channel: str | None, reason: str, detail: str, now: int,
             result: BatchResult, index: int | None = None, event_id: str | None = None) -> None:
        """Send the message (or one movement of it: `index`, `event_id`) to the dead-letter topic with its reason.
        An input too large to carry whole keeps its first bytes, so that its dead letter fits the record limit;
        the original stays at its topic, partition and offset. Once committed it is counted and logged (a flood of
        them: one line per 10 s, with a count)."""
        fields = {**input_fields(message.topic, message.partition, message.offset, message.key),
                  **movement_fields(None, channel, event_id), "reason": reason}
        outbox.on_commit(metrics.DEAD_LETTERS.labels(reason, channel or "").inc)
        outbox.on_commit(partial(deadletter_log.warning, "dead-lettered: %s", detail[:300], extra=fields))
        result.dead_letters += 1
        key, value = message.key, message.value
        room = self.encoder.limit - DEAD_LETTER_OVERHEAD
        if len(key or b"") + len(value or b"") > room:
            detail = (f"{detail} (input of {len(key or b'') + len(value or b'')} bytes cut to fit; the original is at "
                      f"{message.topic}/{message.partition}/{message.offset})")
            key = key[:MAX_DEAD_LETTER_KEY] if key is not None else None
            value = value[:room - len(key or b"")] if value is not None else None
        outbox.send(self.topic, key or b"", self.encoder.codec.encode(Schema.DEAD_LETTER, {
            "reason": reason, "detail": detail[:MAX_DETAIL], "channel": channel, "source_topic": message.topic,
            "source_partition": message.partition, "source_offset": message.offset, "movement_index": index,
            "key": key, "value": value, "failed_at": now}), None)

    def send_batch(self, batch: Sequence[Inbound], outbox: Outbox, reason: str, detail: str) -> None:
        """Send every message of a batch (one whose handling failed unexpectedly)."""
        now = now_ms()
        for message in batch:
            self.send(outbox, message, None, reason, detail, now, BatchResult())
