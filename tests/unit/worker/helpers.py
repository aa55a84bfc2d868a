"""Builds a worker's pipeline with its collaborators, as streams.worker.runtime.bootstrap does, without faust."""

from __future__ import annotations

from streams.domain import Movement, Network
from streams.kafka.topics import TopicRegistry
from streams.settings import DEFAULT_MAX_RECORD_BYTES, load_settings
from streams.wire.codec import default_codec
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.messages import Inbound
from streams.worker.processing.pipeline import Pipeline
from streams.worker.reference.network_in_force import NetworkInForce
from tests.unit.domain.helpers import NETWORK

PARTITIONS = 4


def registry() -> TopicRegistry:
    return TopicRegistry(load_settings(partitions=PARTITIONS, topic_prefix="u"))


def pipeline(network: Network = NETWORK, version: int = 3, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
             ) -> Pipeline:
    topics = registry()
    codec = default_codec()
    in_force = NetworkInForce(topics)
    in_force.adopt(network, version)
    return Pipeline(topics, codec, in_force, AtsPublisher(topics, codec, in_force),
                    ExpiryScheduler(topics, codec, in_force), max_record_bytes=max_record_bytes)


def message(topics: TopicRegistry, movements: list[Movement], offset: int = 0, partition: int | None = None,
            side: str = "restock") -> Inbound:
    """One input message carrying `movements` (a Movement alone, or a MovementBatch)."""
    codec = default_codec()
    first = movements[0]
    value = codec.encode(Schema.MOVEMENT, movement_to_record(first)) if len(movements) == 1 else \
        codec.encode(Schema.MOVEMENT_BATCH, {"movements": [movement_to_record(m) for m in movements]})
    topic = (topics.restock if side == "restock" else topics.sales)(first.channel).name
    return Inbound(topic, sku_partition(first.sku, PARTITIONS) if partition is None else partition, offset,
                   first.sku.encode(), value)
