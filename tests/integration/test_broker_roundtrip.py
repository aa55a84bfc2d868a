"""A message round trip through the real broker with the channel-side client settings (confluent-kafka)."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Message

from streams.wire.partitioner import partition_for
from tests.integration.conftest import consume, producer


def test_idempotent_murmur2_producer_round_trip(bootstrap: str, make_topic: Callable[..., str]) -> None:
    topic = make_topic("roundtrip", partitions=6)
    sent = {f"SKU-{i:05d}".encode(): f"v{i}".encode() for i in range(300)}
    prod = producer(bootstrap)
    delivered: list[Message] = []
    for key, value in sent.items():
        prod.produce(topic, key=key, value=value, on_delivery=lambda err, msg: delivered.append(msg))
    assert prod.flush(30) == 0
    assert all(msg.error() is None for msg in delivered)

    received = consume(bootstrap, topic, lambda got: len(got) >= len(sent),
                       lambda m: (m.key(), m.value(), m.partition()))

    assert {key: value for key, value, _ in received} == sent
    # The broker stored each key where Kafka's murmur2 says: the rule that puts every SKU on one worker.
    assert {key: part for key, _, part in received} == {key: partition_for(key, 6) for key in sent}
    assert len({part for _, _, part in received}) == 6
