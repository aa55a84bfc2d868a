"""Movements validate themselves: misuse is a clear error naming the field, before anything is applied."""

from __future__ import annotations

import pytest

from streams.domain import InvalidMovement, Kind, Movement
from tests.unit.domain.helpers import mv


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "sale", "quantity": 0}, "quantity: must be positive for a sale, got 0"),
    ({"kind": "receipt", "quantity": -3}, "quantity: must be positive for a receipt, got -3"),
    ({"kind": "adjustment", "quantity": 0, "reason": "damage"}, "quantity: an adjustment must change stock"),
    ({"kind": "adjustment", "quantity": -2, "reason": "lost"}, "reason: adjustment reason 'lost' is not one of"),
    ({"kind": "count", "quantity": -1}, "quantity: a count is absolute and cannot be negative"),
    ({"kind": "teleport"}, "kind: unknown movement type 'teleport'"),
    ({"kind": "sale", "event_id": ""}, "event_id: missing"),
    ({"kind": "sale", "sku": "bad sku!"}, "sku: 'bad sku!' is not a SKU"),
    ({"kind": "sale", "location": None}, "location: missing"),
    ({"kind": "transfer_out", "transfer_id": "t1"}, "other_location: a transfer needs its other end"),
    ({"kind": "transfer_out", "other_location": "store-a"}, "transfer_id: missing for a transfer"),
    ({"kind": "reservation_placed", "reservation_id": "r1"}, "expires_at: a reservation needs an expiry"),
    ({"kind": "reservation_released"}, "reservation_id: missing"),
])
def test_invalid_movements_name_the_field(kwargs: dict[str, object], message: str) -> None:
    kind = kwargs.pop("kind")
    with pytest.raises(InvalidMovement, match=message.replace("(", r"\(")):
        if kind == "teleport":
            Movement(kind, "e1", "wms", "SKU-1", "wh-1", 1, 1)  # type: ignore[arg-type]
        else:
            mv(kind, **kwargs)  # type: ignore[arg-type]


def test_deltas_by_kind() -> None:
    assert mv(Kind.SALE, quantity=3).delta == -3
    assert mv(Kind.RETURN, quantity=2).delta == 2
    assert mv(Kind.RETURN, quantity=2, resellable=False).delta == 0
    assert mv(Kind.RECEIPT, quantity=5).delta == 5
    assert mv(Kind.ADJUSTMENT, quantity=-4, reason="shrinkage").delta == -4
    assert mv(Kind.TRANSFER_OUT, quantity=2, other_location="store-a", transfer_id="t").delta == -2
    with pytest.raises(InvalidMovement):
        _ = mv(Kind.COUNT, quantity=5).delta


def test_event_key_is_unique_per_channel() -> None:
    assert mv(Kind.SALE, event_id="42", channel="pos-a", location="store-a").key == "pos-a:42"
    assert mv(Kind.SALE, event_id="42", channel="pos-b", location="store-b").key == "pos-b:42"
