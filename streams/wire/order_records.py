"""Where orders meet wire records: a channel's OrderRequest and OrderDecision, the OrderStep messages between an
order's coordinator and its lines' owners, and the coordinator's OrderState in the stock table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streams.domain.order_sourcing import LineStock, OrderLine, OrderPlan, Parcel
from streams.domain.orders import (
    AskFigures,
    ConfirmHold,
    Figures,
    HoldAnswer,
    Order,
    OrderDecision,
    OrderRequest,
    Phase,
    PlaceHold,
    ReleaseHold,
    SourcedLine,
    SourceHold,
)


def _holds(parts: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"location": location, "quantity": units} for location, units in parts]


def _parts(records: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((p["location"], p["quantity"]) for p in records)


# --- the channel's request and decision -------------------------------------------------------------------------
def order_request_record(request: OrderRequest, requested_at: int) -> dict[str, Any]:
    return {"order_id": request.order_id,
            "lines": [{"line_id": line.line_id, "sku": line.sku, "quantity": line.quantity, "alias": line.alias}
                      for line in request.lines],
            "latitude": request.latitude, "longitude": request.longitude, "mode": request.mode,
            "max_split": request.max_split, "partial": request.partial, "expires_at": request.expires_at,
            "requested_at": requested_at, "pickup_at": request.pickup_at}


def order_request_from_record(record: Mapping[str, Any], channel: str,
                              resolve: Callable[[str], str | None] = lambda alias: None) -> OrderRequest:
    """The request of `channel` (the topic it came on). A line named by an alias gets the SKU `resolve` finds for
    it ("" when none: the order is refused naming the line)."""
    lines = []
    for line in record["lines"]:
        sku, alias = line["sku"], line.get("alias")
        if not sku and alias:
            sku = resolve(alias) or ""
        lines.append(OrderLine(line["line_id"], sku, line["quantity"], alias))
    return OrderRequest(record["order_id"], channel, tuple(lines), record.get("latitude"), record.get("longitude"),
                        record.get("mode") or "ship", record.get("max_split"), bool(record.get("partial")),
                        record["expires_at"], record.get("pickup_at"))


def _parcel_record(parcel: Parcel) -> dict[str, Any]:
    return {"location": parcel.location, "distance_km": parcel.distance_km, "cost": parcel.cost,
            "lines": [{"line_id": line_id, "quantity": units} for line_id, units in parcel.lines]}


def order_decision_record(decision: OrderDecision, request: OrderRequest) -> dict[str, Any]:
    plan, lines = decision.plan, {line.line_id: line for line in request.lines}
    held = []
    for line_id, reservation_id in decision.reservations:
        parts = plan.allocations.get(line_id, ()) if plan is not None else ()
        line = lines[line_id]
        held.append({"line_id": line_id, "sku": line.sku, "quantity": line.quantity,
                     "reservation_id": reservation_id, "parts": _holds(parts)})
    return {"channel": decision.channel, "order_id": decision.order_id, "accepted": decision.accepted,
            "reason": decision.reason or "", "line": decision.line, "lines": held,
            "parcels": [_parcel_record(p) for p in plan.parcels] if plan is not None else [],
            "total_cost": plan.cost if plan is not None else 0.0,
            "left_out": list(plan.left_out) if plan is not None else [],
            "expires_at": decision.expires_at, "decided_at": decision.decided_at}


# --- steps between the coordinator and the owners ----------------------------------------------------------------
Step = tuple[str, dict[str, Any]]  # (message key, OrderStep record)


def command_step(command: AskFigures | PlaceHold | SourceHold | ConfirmHold | ReleaseHold, channel: str, now: int
                 ) -> Step:
    """An owner-bound command as the step record sent to the line's SKU (its key)."""
    line = command.line
    record: dict[str, Any] = {"order_id": command.order_id, "channel": channel, "line_id": line.line_id,
                              "sku": line.sku, "sent_at": now}
    if isinstance(command, AskFigures):
        record.update(kind="ask_figures", attempt=command.attempt)
    elif isinstance(command, PlaceHold):
        record.update(kind="place_hold", hold_id=command.hold_id, parts=_holds(command.parts),
                      expires_at=command.expires_at)
    elif isinstance(command, SourceHold):
        record.update(kind="source_hold", hold_id=command.hold_id, expires_at=command.expires_at,
                      quantity=line.quantity, latitude=command.latitude, longitude=command.longitude,
                      mode=command.mode)
    elif isinstance(command, ConfirmHold):
        record.update(kind="confirm_hold", hold_id=command.hold_id, parts=_holds(command.parts),
                      expires_at=command.expires_at)
    else:
        record.update(kind="release_hold", hold_id=command.hold_id)
    return line.sku, record


def figures_step(ask: Mapping[str, Any], stock: LineStock, now: int) -> Step:
    """The owner's answer to ask_figures, keyed by the order id."""
    return ask["order_id"], {"kind": "figures", "order_id": ask["order_id"], "channel": ask["channel"],
                             "line_id": ask["line_id"], "sku": ask["sku"], "attempt": ask["attempt"],
                             "parts": _holds(sorted(stock.available.items())), "sellable": stock.sellable,
                             "sent_at": now}


def hold_answer_step(order_id: str, channel: str, line_id: str, hold: str, held: bool, reason: str,
                     now: int, parts: Sequence[tuple[str, int]] = (), figures: LineStock | None = None) -> Step:
    """The owner's answer to place_hold or source_hold (`figures`: a sourced hold's, the line's figures once
    held)."""
    return order_id, {"kind": "hold_answer", "order_id": order_id, "channel": channel, "line_id": line_id,
                      "hold_id": hold, "held": held, "reason": reason, "parts": _holds(parts),
                      "available": None if figures is None else _holds(sorted(figures.available.items())),
                      "sellable": 0 if figures is None else figures.sellable, "sent_at": now}


def sourced_line(record: Mapping[str, Any]) -> SourcedLine | None:
    """What a source_hold step says of its line (None for any other step)."""
    if record["kind"] != "source_hold" or record.get("latitude") is None or record.get("longitude") is None:
        return None
    return SourcedLine(record["quantity"], record["latitude"], record["longitude"], record.get("mode") or "ship")


def tick_step(order_id: str, channel: str, now: int) -> Step:
    return order_id, {"kind": "tick", "order_id": order_id, "channel": channel, "sent_at": now}


def event_of_step(record: Mapping[str, Any]) -> Figures | HoldAnswer | None:
    """The coordinator's event a step to it carries (None for a tick: the time is the worker's)."""
    if record["kind"] == "figures":
        stock = LineStock(dict(_parts(record["parts"])), record["sellable"])
        return Figures(record["line_id"], record["attempt"], stock)
    if record["kind"] == "hold_answer":
        available = record.get("available")
        figures = None if available is None else LineStock(dict(_parts(available)), record.get("sellable") or 0)
        return HoldAnswer(record["line_id"], record["hold_id"], record["held"], record["reason"] or None,
                          _parts(record.get("parts") or ()), figures)
    return None


# --- the coordinator's state -------------------------------------------------------------------------------------
def _plan_record(plan: OrderPlan) -> dict[str, Any]:
    return {"accepted": plan.accepted, "reason": plan.reason, "line": plan.line,
            "parcels": [_parcel_record(p) for p in plan.parcels], "left_out": list(plan.left_out),
            "allocations": [{"line_id": line_id, "parts": _holds(parts)}
                            for line_id, parts in plan.allocations.items()]}


def _plan_from(record: Mapping[str, Any]) -> OrderPlan:
    parcels = tuple(Parcel(p["location"], p["distance_km"], p["cost"],
                           tuple((line["line_id"], line["quantity"]) for line in p["lines"]))
                    for p in record["parcels"])
    return OrderPlan(record["accepted"], record["reason"], record["line"], parcels, tuple(record["left_out"]),
                     {a["line_id"]: _parts(a["parts"]) for a in record["allocations"]})


def order_state_record(order: Order) -> dict[str, Any]:
    decision = order.decision
    return {"channel": order.request.channel, "request": order_request_record(order.request, order.requested_at),
            "requested_at": order.requested_at, "deadline": order.deadline, "phase": order.phase.value,
            "attempt": order.attempt,
            "figures": [{"line_id": line_id, "available": _holds(sorted(stock.available.items())),
                         "sellable": stock.sellable, "held": _holds(order.sourced.get(line_id, ()))}
                        for line_id, stock in order.figures.items()],
            "holds": [{"line_id": line_id, "placed": placed} for line_id, placed in order.holds.items()],
            "plan": _plan_record(order.plan) if order.plan is not None else None,
            "decision": None if decision is None else {"accepted": decision.accepted, "reason": decision.reason,
                                                       "line": decision.line, "decided_at": decision.decided_at}}


def order_from_state(record: Mapping[str, Any]) -> Order:
    request = order_request_from_record(record["request"], record["channel"])
    order = Order(request, record["requested_at"], record["deadline"], Phase(record["phase"]), record["attempt"],
                  {f["line_id"]: LineStock(dict(_parts(f["available"])), f["sellable"]) for f in record["figures"]},
                  _plan_from(record["plan"]) if record["plan"] is not None else None,
                  {h["line_id"]: h["placed"] for h in record["holds"]})
    if request.holds_first and order.plan is None:
        order.sourced = {f["line_id"]: _parts(f.get("held") or ()) for f in record["figures"]}
    found = record["decision"]
    if found is not None:
        accepted = found["accepted"]
        held = tuple((line_id, order.hold_of(line_id)) for line_id in order.holds) if accepted else ()
        order.decision = OrderDecision(request.order_id, request.channel, accepted, found["reason"], found["line"],
                                       order.plan if accepted else None, found["decided_at"], held,
                                       request.expires_at if accepted else None)
    return order
