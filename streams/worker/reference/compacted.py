"""Following a compacted topic whole, in every worker (a GlobalKTable, in Kafka Streams' words): the catalog and
the transfer suggestions, which any worker must answer from whatever partition wrote them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.kafka.aio import TopicPartition, new_aio_consumer
from streams.kafka.topics import TopicSpec
from streams.security import Kafka


class CompactedTopicFollower:
    """Reads every partition of a topic from its start (committed records only), hands each record to `take`
    (None: a tombstone), and sets `caught_up` once it has read what the topic held when it started."""

    def __init__(self, servers: Kafka, topic: TopicSpec) -> None:
        self.servers, self.topic = servers, topic
        self.caught_up = asyncio.Event()

    def take(self, key: bytes, value: bytes | None) -> None:
        raise NotImplementedError

    async def run(self, should_stop: Callable[[], bool]) -> None:
        consumer = new_aio_consumer(self.servers, group_id=None, isolation_level="read_committed")
        await consumer.start()
        partitions = [TopicPartition(self.topic.name, p) for p in range(self.topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        try:
            while not should_stop():
                if not self.caught_up.is_set():  # checked first: an empty topic is read at once
                    positions = [await consumer.position(tp) for tp in ends]
                    if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                        self.caught_up.set()
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        if message.key is not None:
                            self.take(message.key, message.value)
        finally:
            await consumer.stop()
