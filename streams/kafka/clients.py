"""Kafka clients with the project's settings: every producer, consumer and admin client is made here.

Every producer is idempotent, waits for all in-sync replicas and uses Kafka's murmur2 partitioner (confluent-kafka's
default is not murmur2), so every producer and the workers agree where a SKU lives.
"""

from __future__ import annotations

import asyncio
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

PRODUCER_SETTINGS: dict[str, Any] = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}


def new_producer(servers: str, **overrides: Any) -> Producer:
    """A confluent-kafka producer with the project's settings (`overrides` in librdkafka's names)."""
    return Producer({"bootstrap.servers": servers, **PRODUCER_SETTINGS, **overrides})


def new_consumer(servers: str, group_id: str, **overrides: Any) -> Consumer:
    """A confluent-kafka consumer that commits nothing unless asked (`overrides` in librdkafka's names)."""
    return Consumer({"bootstrap.servers": servers, "group.id": group_id, "enable.auto.commit": False,
                     **overrides})


def unassigned_consumer(servers: str) -> Consumer:
    """A consumer for explicitly assigned partitions: its group is its own and nothing is committed."""
    return new_consumer(servers, f"stocksync-client-{uuid.uuid4()}", **{"enable.partition.eof": False})


def new_admin(servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": servers})


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


def assign_all(consumer: Consumer, topic: str, from_beginning: bool) -> dict[int, int]:
    """Assign every partition of `topic` (see start_positions); returns the end offsets found."""
    positions, ends = start_positions(consumer, topic, from_beginning)
    consumer.assign(positions)
    return ends
