"""The query API's answers and its 4xx errors, on a worker's table as the domain leaves it."""

from __future__ import annotations

import pytest

from streams.domain import Kind, Movement, Network, SkuStock, channel_ats, plan_fulfilment
from streams.worker.api.query import ApiError, QueryService
from tests.integration.workload import NETWORK

NET = Network.from_dict(NETWORK)


def service() -> tuple[QueryService, SkuStock]:
    stock = SkuStock("SKU-1")
    for i, (location, units) in enumerate((("w1", 2), ("w2", 4), ("s2", 1))):
        stock.apply(Movement(Kind.RECEIPT, f"r{i}", "wms", "SKU-1", location, units, 1_000), NET, 1_000)
    tables = {"SKU-1": stock}
    return QueryService(lookup=tables.get, network=lambda: (NET, 7)), stock


def test_positions_cover_every_location_with_zeros_for_unseen() -> None:
    api, stock = service()
    answer = api.positions("SKU-1")
    assert answer["version"] == stock.version and answer["network_version"] == 7
    assert {p["location"]: (p["on_hand"], p["available"]) for p in answer["positions"]} == {
        "s1": (0, 0), "s2": (1, 1), "w1": (2, 2), "w2": (4, 4)}
    assert api.positions("NEVER-SEEN")["positions"][0]["on_hand"] == 0
    assert api.position("SKU-1", "w2")["available"] == 4


def test_channel_ats_and_sourcing_agree_with_the_domain() -> None:
    api, stock = service()
    assert api.channel_ats("web", "SKU-1")["ats"] == channel_ats(stock, NET.channels["web"]) == 5
    answer = api.sourcing("SKU-1", {"channel": "web", "quantity": "5", "lat": "52.5", "lon": "13.4"})
    expected = plan_fulfilment(stock, NET, "web", 5, 52.5, 13.4)
    assert [(a["location"], a["quantity"]) for a in answer["allocations"]] == [
        (a.location, a.quantity) for a in expected.allocations]
    assert answer["allocated"] == 5 and answer["complete"] and answer["shortfall"] == 0
    assert [c["cost"] for c in answer["candidates"]] == sorted(c["cost"] for c in answer["candidates"])
    pickup = api.sourcing("SKU-1", {"channel": "web", "quantity": "1", "lat": "53.5", "lon": "10", "mode": "pickup"})
    assert [a["location"] for a in pickup["allocations"]] == ["s2"]


@pytest.mark.parametrize(("call", "status", "names"), [
    (lambda api: api.positions("no spaces"), 400, "sku"),
    (lambda api: api.position("SKU-1", "mars"), 404, "location"),
    (lambda api: api.channel_ats("nobody", "SKU-1"), 404, "channel"),
    (lambda api: api.sourcing("SKU-1", {"quantity": "1", "lat": "1", "lon": "1"}), 400, "channel"),
    (lambda api: api.sourcing("SKU-1", {"channel": "x", "quantity": "1", "lat": "1", "lon": "1"}), 404, "channel"),
    (lambda api: api.sourcing("SKU-1", {"channel": "web", "quantity": "-1", "lat": "1", "lon": "1"}), 400,
     "quantity"),
    (lambda api: api.sourcing("SKU-1", {"channel": "web", "quantity": "1", "lat": "nan", "lon": "1"}), 400, "lat"),
    (lambda api: api.sourcing("SKU-1", {"channel": "web", "quantity": "1", "lat": "1"}), 400, "lon"),
    (lambda api: api.sourcing("SKU-1", {"channel": "web", "quantity": "1", "lat": "1", "lon": "1", "mode": "x"}),
     400, "mode"),
])
def test_bad_requests_are_4xx_naming_the_parameter(call, status: int, names: str) -> None:  # type: ignore[no-untyped-def]
    api, _ = service()
    with pytest.raises(ApiError) as caught:
        call(api)
    assert caught.value.status == status and caught.value.message.startswith(names)
