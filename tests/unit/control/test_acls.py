"""The ACL plan derived from the network (pure): each channel's principal gets its own topics and nothing else."""

from __future__ import annotations

import pytest

from streams.control.acls import Principals, owned, plan
from streams.errors import ConfigError
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings

REGISTRY = TopicRegistry(load_settings(topic_prefix="shop", app_id="shop-workers"))


def test_a_channel_may_write_only_its_inputs_and_read_only_its_feed_and_replies() -> None:
    grants = [g for g in plan(REGISTRY, ["web", "web-eu"], Principals()) if g.principal == "User:channel-web"]
    assert {(g.operation, g.kind, g.name, g.prefixed) for g in grants} == {
        ("WRITE", "topic", "shop.channel.web.sales", False), ("WRITE", "topic", "shop.channel.web.restock", False),
        ("READ", "topic", "shop.channel.web.ats", False), ("READ", "topic", "shop.channel.web.replies", False),
        ("READ", "group", "shop.channel.web.", True)}  # the dot: web's groups do not cover web-eu's


def test_a_channel_out_of_the_network_has_no_grant_and_the_others_keep_theirs() -> None:
    both, one = set(plan(REGISTRY, ["web", "app"], Principals())), set(plan(REGISTRY, ["web"], Principals()))
    assert {g.principal for g in both - one} == {"User:channel-app"}
    assert one < both


def test_workers_never_write_the_network_and_no_channel_touches_the_stock_changelog() -> None:
    grants = plan(REGISTRY, ["web"], Principals())
    assert ("User:stocksync", "READ") in {(g.principal, g.operation) for g in grants
                                         if g.name == REGISTRY.network.name}
    assert not [g for g in grants if g.name == REGISTRY.network.name and g.operation == "WRITE"]
    changelog = REGISTRY.stock_changelog.name
    assert {g.principal for g in grants if changelog.startswith(g.name) and g.kind == "topic"} == {
        "User:stocksync", "User:admin"}


def test_every_planned_grant_is_one_the_deployment_owns() -> None:
    principals = Principals()
    assert all(owned(REGISTRY, g, principals) for g in plan(REGISTRY, ["web", "pos-1"], principals))


@pytest.mark.parametrize("principals", [dict(workers="stocksync"), dict(channel_template="User:fixed")])
def test_a_malformed_principal_is_a_config_error(principals: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Principals(**principals)
