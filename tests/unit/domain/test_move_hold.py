"""Moving a hold: a held reservation asked for again at one location moves there whole in one step, or stays."""

from __future__ import annotations

from streams.domain import SkuStock, Status
from tests.unit.domain.helpers import NETWORK, NOW, mv


def held(*receipts: tuple[str, int], quantity: int, location: str | None = None) -> SkuStock:
    stock = SkuStock("SKU-1")
    for where, units in receipts:
        stock.apply(mv("receipt", where, units), NETWORK, NOW)
    placed = stock.apply(mv("reservation_placed", location, quantity, channel="wms", reservation_id="r",
                            expires_at=NOW + 60_000), NETWORK, NOW)
    assert placed.decision is not None and placed.decision.accepted
    return stock


def move(stock: SkuStock, to: str, quantity: int, expires_at: int = NOW + 90_000
         ) -> tuple[Status, str, tuple[tuple[str, int], ...]]:
    outcome = stock.apply(mv("reservation_placed", to, quantity, channel="wms", reservation_id="r",
                             expires_at=expires_at), NETWORK, NOW)
    assert outcome.decision is not None
    return outcome.status, outcome.decision.reason, outcome.decision.parts


def test_a_hold_moves_whole_to_a_location_with_exactly_its_units() -> None:
    stock = held(("store-a", 2), ("store-b", 2), quantity=2, location="store-a")
    assert move(stock, "store-b", 2) == (Status.APPLIED, "", (("store-b", 2),))
    assert (stock.position("store-a").reserved, stock.position("store-b").reserved) == (0, 2)
    assert stock.available("store-a") == 2 and stock.available("store-b") == 0
    [hold] = stock.open_reservations()
    assert hold.parts == (("store-b", 2),) and hold.expires_at == NOW + 90_000


def test_units_the_hold_already_has_at_the_target_count_towards_the_move() -> None:
    # Held channel-wide at store-a (3) and store-b (1); store-b has 2 more: with the hold's own 1 that makes 3.
    stock = held(("store-a", 3), ("store-b", 3), quantity=4)
    assert stock.open_reservations()[0].parts == (("store-a", 3), ("store-b", 1))
    assert move(stock, "store-b", 4)[0] is Status.REFUSED  # 2 free + 1 its own < 4
    stock.apply(mv("receipt", "store-b", 1), NETWORK, NOW)
    assert move(stock, "store-b", 4) == (Status.APPLIED, "", (("store-b", 4),))
    assert (stock.position("store-a").reserved, stock.position("store-b").reserved) == (0, 4)


def test_a_move_the_target_cannot_take_leaves_the_hold_where_it_was() -> None:
    stock = held(("store-a", 2), ("store-b", 1), quantity=2, location="store-a")
    assert move(stock, "store-b", 2) == (Status.REFUSED, "insufficient_stock", ())
    assert move(stock, "store-b", 1) == (Status.REFUSED, "quantity_differs", ())
    assert move(stock, "store-a", 1, expires_at=NOW) == (Status.REFUSED, "expired", ())
    assert stock.open_reservations()[0].parts == (("store-a", 2),)
    assert (stock.position("store-a").reserved, stock.position("store-b").reserved) == (2, 0)


def test_moving_a_hold_to_where_it_is_changes_nothing() -> None:
    stock = held(("store-a", 2), quantity=2, location="store-a")
    version = stock.version
    status, reason, parts = move(stock, "store-a", 2)
    assert (status, reason, parts) == (Status.DUPLICATE, "", (("store-a", 2),)) and stock.version == version


def _sourced_at_store_a() -> tuple[SkuStock, str]:
    from streams.domain.orders import SourcedLine, hold_movement

    stock = SkuStock("SKU-1")
    for where, units in (("store-a", 3), ("store-b", 1), ("wh-1", 2)):
        stock.apply(mv("receipt", where, units), NETWORK, NOW)
    hold = "o-1/l1/1.x"
    sourced = stock.apply(hold_movement("source", "web", "SKU-1", hold, (), NOW + 30_000, NOW,
                                        SourcedLine(3, 52.52, 13.40, "ship")), NETWORK, NOW)
    assert sourced.decision is not None and sourced.decision.parts == (("store-a", 3),)
    return stock, hold


def test_an_order_line_held_where_it_would_go_alone_moves_to_where_its_order_is_planned() -> None:
    """A cart's line held first at store-a is placed by its plan at wh-1 and store-b: moved in one step. A
    confirmation naming other parts than the hold's never moves it."""
    from streams.domain.orders import hold_movement

    stock, hold = _sourced_at_store_a()
    stray = stock.apply(hold_movement("confirm", "web", "SKU-1", hold, (("wh-1", 3),), NOW + 90_000, NOW),
                        NETWORK, NOW)
    assert stray.status is Status.DUPLICATE and stock.open_reservations()[0].parts == (("store-a", 3),)
    moved = stock.apply(hold_movement("place", "web", "SKU-1", hold, (("wh-1", 2), ("store-b", 1)), NOW + 30_000,
                                      NOW), NETWORK, NOW)
    assert moved.status is Status.APPLIED and moved.decision is not None
    assert moved.decision.parts == (("store-b", 1), ("wh-1", 2))
    assert [stock.position(loc).reserved for loc in ("store-a", "store-b", "wh-1")] == [0, 1, 2]


def test_an_order_line_the_planned_parts_cannot_take_stays_where_it_is_held() -> None:
    from streams.domain.orders import hold_movement

    stock, hold = _sourced_at_store_a()
    refused = stock.apply(hold_movement("place", "web", "SKU-1", hold, (("wh-1", 3),), NOW + 30_000, NOW),
                          NETWORK, NOW)
    assert (refused.status, refused.reason) == (Status.REFUSED, "insufficient_stock")
    assert [stock.position(loc).reserved for loc in ("store-a", "store-b", "wh-1")] == [3, 0, 0]
