"""aiokafka with the project's settings, for the worker's own asyncio reading (its inputs, the network, the
compacted topics every worker follows): the only module outside the worker's runtime that imports aiokafka."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer as AIOKafkaConsumer
from aiokafka import TopicPartition as TopicPartition

from streams.security import KafkaConnection, connection_of


def new_aio_consumer(servers: KafkaConnection | str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer for the worker's own reading (`options` in aiokafka's names)."""
    kafka = connection_of(servers)
    return AIOKafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False,
                            **kafka.security.aiokafka(), **options)
