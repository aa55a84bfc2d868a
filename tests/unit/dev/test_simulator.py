"""The simulator's plan: reproducible for a seed, realistic in its mix, valid for the network it runs on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from streams.control.network import load_network_file
from streams.dev.simulator import Cart, CartSettled, Roles, plan
from streams.domain import Kind, Movement, Network, SkuStock, Status
from streams.errors import ConfigError
from tests.integration.workload import NETWORK

DEMO = load_network_file(Path(__file__).resolve().parents[3] / "deploy" / "network.yaml")


def test_same_seed_same_steps_other_seed_other_steps() -> None:
    first = plan(DEMO, seed=11, rate=30, duration_s=90, start_ms=1_700_000_000_000)
    again = plan(DEMO, seed=11, rate=30, duration_s=90, start_ms=1_700_000_000_000)
    other = plan(DEMO, seed=12, rate=30, duration_s=90, start_ms=1_700_000_000_000)
    assert first == again
    assert [s.action for s in first] != [s.action for s in other]


def test_roles_come_from_the_network() -> None:
    roles = Roles.of(DEMO)
    assert roles.pos == ("store-north", "store-south") and roles.offline_pos == "store-south"
    assert roles.online == ("app", "web") and roles.marketplaces == ("marketplace",)
    assert roles.warehouse_system == "wms"
    assert Roles.of(Network.from_dict(NETWORK)).warehouse_system == "wms"
    with pytest.raises(ConfigError, match="POS"):
        Roles.of(Network.from_dict({"locations": NETWORK["locations"], "channels": [NETWORK["channels"][2]]}))


@pytest.mark.parametrize("network", [DEMO, Network.from_dict(NETWORK)])
def test_plan_is_a_realistic_valid_mix(network: Network) -> None:
    steps = plan(network, seed=3, rate=40, duration_s=150, skus=30, start_ms=1_000_000)
    carts = [s.action for s in steps if isinstance(s.action, Cart)]
    settled = [s.action for s in steps if isinstance(s.action, CartSettled)]
    assert carts and any(len(c.lines) > 1 for c in carts) and all(len({sku for sku, _ in c.lines}) == len(c.lines)
                                                                   for c in carts)
    assert 0 < len(settled) < len(carts) and {p.paid for p in settled} == {True, False}
    assert {s.order_id for s in settled} <= {c.order_id for c in carts}
    assert all(s.channel in Roles.of(network).online for s in steps if isinstance(s.action, (Cart, CartSettled)))
    steps = [s for s in steps if s.movement is not None]
    kinds = Counter(s.action.kind for s in steps if isinstance(s.action, Movement))
    assert set(kinds) == {Kind.SALE, Kind.RETURN, Kind.RECEIPT, Kind.ADJUSTMENT, Kind.COUNT, Kind.TRANSFER_OUT,
                          Kind.TRANSFER_IN, Kind.RESERVATION_PLACED, Kind.RESERVATION_RELEASED,
                          Kind.RESERVATION_FULFILLED}
    assert [s.at_ms for s in steps] == sorted(s.at_ms for s in steps)
    movements = [s.action for s in steps if isinstance(s.action, Movement)]
    assert len({m.key for m in movements}) == len(steps)  # event ids unique per channel
    for step in steps:
        m = step.action
        assert isinstance(m, Movement)
        assert m.location is None or network.owns(step.channel, m.location), m
        if m.kind in (Kind.RESERVATION_FULFILLED, Kind.RESERVATION_RELEASED):
            assert step.needs_accepted == m.reservation_id
    late = [m for s, m in zip(steps, movements, strict=True) if m.occurred_at < 1_000_000 + s.at_ms]
    assert late and {m.channel for m in late} == {Roles.of(network).offline_pos}
    assert all(m.kind is Kind.SALE for m in late)
    placed = [m for m in movements if m.kind is Kind.RESERVATION_PLACED]
    followed = {m.reservation_id for s, m in zip(steps, movements, strict=True) if s.needs_accepted}
    assert 0 < len(followed) < len(placed)  # some are paid or cancelled, the rest expire
    returns = Counter(m.disposition for m in movements if m.kind is Kind.RETURN)
    assert set(returns) == {"sellable", "inspect", "damaged"}
    states = Counter((m.state, m.to_state) for m in movements if m.kind is Kind.ADJUSTMENT)
    assert {("quality_control", "sellable"), ("quality_control", "damaged"), (None, "damaged"),
            ("damaged", "written_off")} <= set(states)
    # Applied in the order sent, every state change finds its units: nothing is dead-lettered.
    stocks: dict[str, SkuStock] = {}
    for m in movements:
        outcome = stocks.setdefault(m.sku, SkuStock(m.sku)).apply(m, network, m.occurred_at + 1)
        assert outcome.status is not Status.REJECTED, (m, outcome.reason)


def test_a_run_ending_while_the_store_is_offline_still_uploads_its_sales() -> None:
    steps = plan(DEMO, seed=2, rate=40, duration_s=12, start_ms=0)  # the store is offline for the first 20 s
    late = [s for s in steps if s.movement is not None and s.movement.occurred_at < s.at_ms]
    assert late and all(s.at_ms == 12_000 for s in late)


def test_bad_rate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rate"):
        plan(DEMO, seed=1, rate=0, duration_s=10)
