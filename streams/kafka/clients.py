"""Kafka clients with the project's settings: every producer, consumer and admin client is made here.

Every producer is idempotent, waits for all in-sync replicas and uses Kafka's murmur2 partitioner (confluent-kafka's
default is not murmur2), so every producer and the workers agree where a SKU lives.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.errors import StocksyncError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

DeliveryCallback = Callable[[Any, Any], None]

# librdkafka's own log lines go through Python's logging (formatted like every other line, JSON included) instead
# of straight to stderr. They are delivered when a client is polled.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
PRODUCER_SETTINGS: dict[str, Any] = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random",
                                     "logger": LIBRDKAFKA_LOG}


def new_producer(servers: str, **overrides: Any) -> Producer:
    """A confluent-kafka producer with the project's settings (`overrides` in librdkafka's names)."""
    return Producer({"bootstrap.servers": servers, **PRODUCER_SETTINGS, **overrides})


# Kafka Streams' value for exactly-once: a worker that dies mid-transaction holds back read_committed readers of
# the partitions it wrote for at most this long (less when its successor fences it first, which it does at once).
TRANSACTION_TIMEOUT_MS = 10_000


def new_transactional_producer(servers: str, transactional_id: str, **overrides: Any) -> Producer:
    """A producer whose records are written in transactions; a newer producer with the same `transactional_id`
    fences it (its next commit fails) and aborts its open transaction."""
    return new_producer(servers, **{"transactional.id": transactional_id,
                                    "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, **overrides})


def new_consumer(servers: str, group_id: str, **overrides: Any) -> Consumer:
    """A confluent-kafka consumer that commits nothing unless asked (`overrides` in librdkafka's names). It reads
    committed records only (librdkafka's default isolation.level): aborted transactions are never seen."""
    return Consumer({"bootstrap.servers": servers, "group.id": group_id, "enable.auto.commit": False,
                     "logger": LIBRDKAFKA_LOG, **overrides})


def unassigned_consumer(servers: str) -> Consumer:
    """A consumer for explicitly assigned partitions: its group is its own and nothing is committed."""
    return new_consumer(servers, f"stocksync-client-{uuid.uuid4()}", **{"enable.partition.eof": False})


def new_admin(servers: str) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": servers, "logger": LIBRDKAFKA_LOG}
    return AdminClient(config)


def new_aio_consumer(servers: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer for the worker's own reading (`options` in aiokafka's names)."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, **options)


# --- producing ----------------------------------------------------------------------------------------------
def offer(producer: Producer, topic: str, value: bytes | None, key: bytes | None, partition: int | None = None,
          on_delivery: DeliveryCallback | None = None) -> bool:
    """Queue one record; False while librdkafka's local queue is full (poll to let it drain, then offer again)."""
    try:
        if partition is None:
            producer.produce(topic, value, key, on_delivery=on_delivery)
        else:
            producer.produce(topic, value, key, partition, on_delivery=on_delivery)
    except BufferError:
        return False
    return True


def produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None, partition: int | None = None,
            on_delivery: DeliveryCallback | None = None) -> None:
    """Queue one record, waiting while the local queue is full."""
    while not offer(producer, topic, value, key, partition, on_delivery):
        producer.poll(0.1)


async def produce_async(producer: Producer, topic: str, value: bytes | None, key: bytes | None,
                        partition: int | None = None, on_delivery: DeliveryCallback | None = None) -> None:
    """Queue one record; while the local queue is full, the event loop runs on as it drains."""
    while not offer(producer, topic, value, key, partition, on_delivery):
        await asyncio.get_running_loop().run_in_executor(None, producer.poll, 0.1)


# --- reading explicitly assigned partitions -----------------------------------------------------------------
_NOT_READY_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART,
                  KafkaError._TIMED_OUT}  # noqa: SLF001 - librdkafka names its local errors with a "_"


def watermarks(consumer: Consumer, tp: TopicPartition, wait_s: float = 30.0) -> tuple[int, int]:
    """A partition's low and high offsets, waiting out a topic so new that its leader is not known yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_positions(consumer: Consumer, topic: str, from_beginning: bool
                    ) -> tuple[list[TopicPartition], dict[int, int]]:
    """Every partition of `topic` at its start or at its current end (explicit offsets: nothing produced after
    this call can slip past), and the end offsets found."""
    metadata = consumer.list_topics(topic, timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise StocksyncError(f"topic {topic} does not exist")
    ends: dict[int, int] = {}
    positions = []
    for partition in sorted(metadata.topics[topic].partitions):
        _, high = watermarks(consumer, TopicPartition(topic, partition))
        ends[partition] = high
        positions.append(TopicPartition(topic, partition, OFFSET_BEGINNING if from_beginning else high))
    return positions, ends


def reached(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    """True once the consumer's position in each partition of `topic` is at or past its end offset in `ends`.
    Positions, not the offsets of messages seen: a partition written in transactions ends with a commit marker,
    which no consumer is given, so its last message is never at end - 1."""
    wanted = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
    return all(tp.offset >= ends[tp.partition] for tp in consumer.position(wanted)) if wanted else True


def last_committed_offsets(servers: str, partitions: list[tuple[str, int]], timeout_s: float = 60.0
                           ) -> dict[tuple[str, int], int]:
    """For each (topic, partition), the offset of its last committed record (-1 if it has none): what a
    read_committed reader has seen once it is up to date. The partition's end offset is past that by the commit
    markers and any aborted records, so it cannot tell a recovering reader when it is done. Read from the end
    backwards in growing windows, so only the tail is fetched."""
    # An end is known from the fetch that reaches it: the broker must not hold that fetch open waiting for more.
    consumer = new_consumer(servers, f"stocksync-tail-{uuid.uuid4()}", **{"enable.partition.eof": True,
                                                                          "fetch.wait.max.ms": 10})
    try:
        found: dict[tuple[str, int], int] = {}
        bounds = {}
        for topic, partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition))
            bounds[(topic, partition)] = (low, high)
            if high <= low:
                found[(topic, partition)] = -1
        window = 64
        deadline = time.monotonic() + timeout_s
        while len(found) < len(partitions):
            todo = {tp: bounds[tp] for tp in partitions if tp not in found}
            starts = {tp: max(low, high - window) for tp, (low, high) in todo.items()}
            consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in todo])
            last: dict[tuple[str, int], int] = {}
            at_end: set[tuple[str, int]] = set()
            while len(at_end) < len(todo):
                if time.monotonic() > deadline:
                    raise StocksyncError(f"could not read the end of {sorted(set(todo) - at_end)} in {timeout_s} s")
                message = consumer.poll(0.5)
                if message is None:
                    continue
                tp = (str(message.topic()), int(message.partition() or 0))
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's local error names
                        raise KafkaException(error)
                    at_end.add(tp)
                elif tp in todo:
                    last[tp] = max(last.get(tp, -1), int(message.offset() or 0))
            for tp in todo:
                if tp in last or starts[tp] <= todo[tp][0]:
                    found[tp] = last.get(tp, -1)  # nothing committed in the whole partition: -1
            window *= 16
        return found
    finally:
        consumer.close()


def assign_all(consumer: Consumer, topic: str, from_beginning: bool) -> dict[int, int]:
    """Assign every partition of `topic` (see start_positions); returns the end offsets found."""
    positions, ends = start_positions(consumer, topic, from_beginning)
    consumer.assign(positions)
    return ends
