"""Topic creation from the registry: idempotent, and loud about an existing topic that differs."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streams.control.admin import ensure_topics
from streams.errors import TopicMismatch
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings


def test_create_is_idempotent_and_applies_configs(admin: AdminClient, unique: str) -> None:
    registry = TopicRegistry(load_settings(topic_prefix=f"t-{unique}", partitions=4))
    specs = registry.all(["web", "store-1"])

    first = ensure_topics(admin, specs)
    second = ensure_topics(admin, specs)

    assert sorted(first.created) == sorted(s.name for s in specs) and first.existing == []
    assert second.created == [] and sorted(second.existing) == sorted(s.name for s in specs)
    topics = admin.list_topics(timeout=10).topics
    assert all(len(topics[s.name].partitions) == s.partitions for s in specs)
    ats = registry.ats("web").name
    config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, ats)])
    assert next(iter(config.values())).result()["cleanup.policy"].value == "compact"


def test_wrong_partition_count_is_reported(admin: AdminClient, unique: str) -> None:
    registry = TopicRegistry(load_settings(topic_prefix=f"t-{unique}", partitions=4))
    wrong = registry.sales("web").name
    for future in admin.create_topics([NewTopic(wrong, 2, 1)]).values():
        future.result()

    with pytest.raises(TopicMismatch, match=rf"{wrong} has 2 partitions, the registry says 4"):
        ensure_topics(admin, registry.for_channel("web"))


def test_wrong_cleanup_policy_is_reported(admin: AdminClient, unique: str) -> None:
    registry = TopicRegistry(load_settings(topic_prefix=f"t-{unique}", partitions=4))
    positions = registry.positions.name
    for future in admin.create_topics([NewTopic(positions, 4, 1, config={"cleanup.policy": "delete"})]).values():
        future.result()

    with pytest.raises(TopicMismatch, match=rf"{positions} has cleanup.policy=delete, the registry says compact"):
        ensure_topics(admin, registry.core())
