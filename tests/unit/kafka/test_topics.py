"""The topic registry names every topic predictably, with its key, value schema, partitions and configs."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from streams.wire.schemas import Schema, load_schemas


def test_registry_names_and_partitions() -> None:
    registry = TopicRegistry(load_settings(topic_prefix="acme", partitions=12))
    names = [spec.name for spec in registry.all(["web"])]
    assert names == ["acme.positions", "acme.ledger", "acme.deadletter", "acme.network", "acme.expiries",
                     "acme.order-steps", "acme.catalog", "acme.transfer-suggestions", "stocksync-stock-changelog",
                     "acme.channel.web.sales",
                     "acme.channel.web.restock", "acme.channel.web.replies", "acme.channel.web.ats"]
    # Every input and every SKU-keyed output share one partition count; the network is one ordered log.
    assert {s.partitions for s in registry.all(["web"]) if s.key.startswith("sku")} == {12}
    assert registry.network.partitions == 1
    assert registry.ats("web").config["cleanup.policy"] == "compact"
    assert registry.ledger.config["cleanup.policy"] == "delete"
    with pytest.raises(ConfigError):
        registry.sales("../etc")


def test_every_topic_value_is_a_schema_in_schemas_dir() -> None:
    specs = TopicRegistry(load_settings()).all(["web"])
    assert all(isinstance(spec.value_schema, Schema) for spec in specs)
    assert {spec.value_schema for spec in specs} <= set(load_schemas())
