"""Orders as a channel sends and reads them: the lines of a cart, and the decision on the whole of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from streams.channel.errors import ChannelError
from streams.domain.order_sourcing import OrderLine
from streams.domain.orders import ORDER_ID, OrderRequest


class InvalidOrder(ChannelError, ValueError):
    """An order that cannot be sent as it is (the message names the line): nothing was sent."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a cart: `quantity` units of a SKU, or of the product the channel's `alias` names (a barcode, a
    listing id: the catalog says which SKU). `line_id` defaults to the line's position, from "1"."""

    sku: str | None = None
    quantity: int = 1
    alias: str | None = None
    line_id: str | None = None


LineLike = Line | tuple[str, int] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HeldLine:
    """An accepted line: its hold (fulfil or release the line by `reservation_id` of `sku`) and where it is."""

    line_id: str
    sku: str
    quantity: int
    reservation_id: str
    parts: tuple[tuple[str, int], ...]  # (location, units)
    expires_at: int | None = None  # when the hold lapses unless fulfilled or released


@dataclass(frozen=True, slots=True)
class Parcel:
    """One shipment: from `location`, with each line's units in it."""

    location: str
    distance_km: float
    cost: float
    lines: tuple[tuple[str, int], ...]  # (line id, units)


@dataclass(frozen=True, slots=True)
class OrderDecision:
    """The decision on a whole order: every line held (`accepted`), or none, with the reason and the line it
    concerns (`line`, when one)."""

    order_id: str
    accepted: bool
    reason: str
    line: str | None
    lines: tuple[HeldLine, ...]
    parcels: tuple[Parcel, ...]
    total_cost: float
    left_out: tuple[str, ...]  # a partial order: the lines that could not be filled
    expires_at: int | None
    decided_at: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> OrderDecision:
        return cls(record["order_id"], record["accepted"], record["reason"], record["line"],
                   tuple(HeldLine(h["line_id"], h["sku"], h["quantity"], h["reservation_id"],
                                  tuple((p["location"], p["quantity"]) for p in h["parts"]), record["expires_at"])
                         for h in record["lines"]),
                   tuple(Parcel(p["location"], p["distance_km"], p["cost"],
                                tuple((line["line_id"], line["quantity"]) for line in p["lines"]))
                         for p in record["parcels"]),
                   record["total_cost"], tuple(record["left_out"]), record["expires_at"], record["decided_at"])


def order_lines(lines: Iterable[LineLike]) -> tuple[OrderLine, ...]:
    """The cart's lines as the domain has them; InvalidOrder names a line that is not one."""
    found = []
    for number, given in enumerate(lines, start=1):
        if isinstance(given, tuple):
            sku, quantity = given
            line = Line(sku, quantity)
        elif isinstance(given, Mapping):
            line = Line(given.get("sku"), given.get("quantity", 1), given.get("alias"), given.get("line_id"))
        elif isinstance(given, Line):
            line = given
        else:
            raise InvalidOrder(f"line {number}: a Line, a (sku, quantity) pair or a mapping, not "
                               f"{type(given).__name__}")
        if not line.sku and not line.alias:
            raise InvalidOrder(f"line {number}: names neither a sku nor an alias")
        if not isinstance(line.quantity, int) or isinstance(line.quantity, bool):
            raise InvalidOrder(f"line {number}: quantity {line.quantity!r} is not a whole number")
        found.append(OrderLine(line.line_id or str(number), line.sku or "", line.quantity,
                               None if line.sku else line.alias))
    return tuple(found)


def checked(request: OrderRequest) -> OrderRequest:
    """The request, if the workers could plan it; InvalidOrder naming what is wrong otherwise."""
    if not ORDER_ID.match(request.order_id):
        raise InvalidOrder(f"order_id: {request.order_id!r} is not an order id (letters, digits, ._:/-; max 64)")
    # A line named by an alias is resolved by the workers: checked here as if it named a SKU of its own.
    stand_ins = tuple(line if line.sku else replace(line, sku=f"alias.{n}") for n, line in enumerate(request.lines))
    problem = replace(request, lines=stand_ins).problem()
    if problem is not None:
        reason, line = problem
        raise InvalidOrder(f"order {request.order_id!r}: {reason}" + (f" (line {line!r})" if line else ""))
    return request
