"""Orders on the real broker: a cart whose lines belong to SKUs of different workers is held whole or not at all,
sourced as one order, and fulfilled or released per order and per line."""

from __future__ import annotations

import pytest

from streams.channel import ChannelClient, InvalidOrder, Line
from streams.wire.partitioner import sku_partition
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK

NEAR_W2 = (51.30, 12.40)


def reserved(deployment: Deployment) -> dict[bytes, tuple[int, int]]:
    """(on_hand, reserved) of every position, as the positions topic last says."""
    return {key: (value["figures"]["on_hand"], value["figures"]["reserved"])
            for key, value in deployment.latest(deployment.registry.positions.name).items()}


def skus_on_different_partitions(partitions: int, count: int) -> list[str]:
    found: dict[int, str] = {}
    for i in range(1000):
        sku = f"CART-{i}"
        found.setdefault(sku_partition(sku, partitions), sku)
        if len(found) == count:
            return sorted(found.values())
    raise AssertionError("not enough partitions")


def test_a_cart_across_workers_is_held_whole_in_one_parcel_then_fulfilled(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    deployment.start_worker("two")
    a, b, c = skus_on_different_partitions(deployment.settings.partitions, 3)
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
        # w2 (nearest) has all but one of c; w1 has everything: one parcel from w1 beats two from w2 and another.
        for sku, w1, w2 in ((a, 5, 5), (b, 5, 5), (c, 5, 1)):
            wms.receipt(sku, "w1", w1, event_id=f"r1-{sku}")
            wms.receipt(sku, "w2", w2, event_id=f"r2-{sku}")
        wms.flush()
        wait_for(lambda: len(reserved(deployment)) == 6, 60, "the receipts")
        decision = web.reserve_order("cart-1", [(a, 1), (b, 2), Line(c, 2, line_id="gift")], deliver_to=NEAR_W2,
                                     timeout_s=30)
        assert decision.accepted, decision
        assert [(p.location, p.lines) for p in decision.parcels] == [("w1", (("1", 1), ("2", 2), ("gift", 2)))]
        assert decision.total_cost == decision.parcels[0].cost > 0
        assert {held.line_id: held.parts for held in decision.lines} == {
            "1": (("w1", 1),), "2": (("w1", 2),), "gift": (("w1", 2),)}
        # Re-sent: the same decision; the same id with other lines: a conflict, and nothing more held.
        assert web.reserve_order("cart-1", [(a, 1), (b, 2), Line(c, 2, line_id="gift")], deliver_to=NEAR_W2,
                                 timeout_s=30) == decision
        conflict = web.reserve_order("cart-1", [(a, 3)], timeout_s=30)
        assert (conflict.accepted, conflict.reason) == (False, "conflict")
        wait_for(lambda: {k: r for k, (_, r) in reserved(deployment).items() if r} ==
                 {f"{a}|w1".encode(): 1, f"{b}|w1".encode(): 2, f"{c}|w1".encode(): 2}, 30, "the order's holds")
        web.fulfil_order(decision, lines=["gift"])
        web.release_order(decision, lines=["1", "2"])
        web.flush()
        wait_for(lambda: reserved(deployment) == {
            f"{a}|w1".encode(): (5, 0), f"{a}|w2".encode(): (5, 0), f"{b}|w1".encode(): (5, 0),
            f"{b}|w2".encode(): (5, 0), f"{c}|w1".encode(): (3, 0), f"{c}|w2".encode(): (1, 0)}, 30,
            "the gift line shipped, the others released")


def test_an_order_one_line_of_which_cannot_be_filled_holds_nothing_and_a_held_line_moves(
        deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    a, b = skus_on_different_partitions(deployment.settings.partitions, 2)
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
        wms.receipt(a, "w1", 10, event_id=f"r-{a}")
        wms.receipt(b, "w1", 3, event_id=f"r-{b}")  # web keeps a buffer of 2: it may sell 1
        wms.flush()
        refused = web.reserve_order("cart-2", [(a, 4), (b, 2)], timeout_s=30)
        assert (refused.accepted, refused.reason, refused.line, refused.lines) == (
            False, "insufficient_stock", "2", ())
        split = web.reserve_order("cart-3", [(a, 4), (b, 2)], partial=True, timeout_s=30)
        assert split.accepted and split.left_out == ("2",) and [h.line_id for h in split.lines] == ["1"]
        with pytest.raises(InvalidOrder, match="duplicate_line"):
            web.request_order("cart-4", [(a, 1), (a, 2)])
        unknown = web.reserve_order("cart-5", [Line(alias="no-such-barcode")], timeout_s=30)
        assert (unknown.accepted, unknown.reason, unknown.line) == (False, "unknown_alias", "1")
        at_store = web.reserve_order("cart-6", [(a, 1)], pickup_at="s1", timeout_s=30)  # s1 has none of it
        assert (at_store.accepted, at_store.reason) == (False, "insufficient_stock")
        wait_for(lambda: reserved(deployment) == {f"{a}|w1".encode(): (10, 4), f"{b}|w1".encode(): (3, 0)}, 30,
                 "only the partial order's line held")
        # The store cannot pick it: the line's hold moves whole to w2 in one step, or stays where it is.
        wms.receipt(a, "w2", 5, event_id=f"r2-{a}")
        wms.flush()
        [line] = split.lines
        assert web.move_hold(line, "s1", timeout_s=30).reason == "insufficient_stock"
        moved = web.move_hold(line, "w2", timeout_s=30)
        assert (moved.accepted, moved.parts, moved.expires_at) == (True, (("w2", 4),), split.expires_at)
    wait_for(lambda: reserved(deployment) == {f"{a}|w1".encode(): (10, 0), f"{a}|w2".encode(): (5, 4),
                                              f"{b}|w1".encode(): (3, 0)}, 30, "the line held at w2 instead")


@pytest.mark.parametrize(("deliver_to", "step"), [
    # No delivery point: figures first, then holds where the plan says.
    *(pytest.param(None, step, id=f"figures_first-{step}") for step in ("ask_figures", "figures", "place_hold")),
    # To a delivery point: held first where each line would go alone (a at w2, the nearer), then a moved to w1.
    *(pytest.param(NEAR_W2, step, id=f"held_first-{step}")
      for step in ("hold_answer", "place_hold", "confirm_hold", "hold_confirmed"))])
def test_a_worker_killed_at_any_step_of_an_order_leaves_it_held_whole_once(
        deployment: Deployment, deliver_to: tuple[float, float] | None, step: str) -> None:
    """The worker dies before committing the transaction that takes the order's `step` (coordinator: asking for
    figures, placing or moving holds, confirming and deciding; owner: answering figures and holds, applying a
    confirmation); the next worker resumes from the committed state: one decision, every line held once, where
    the plan says."""
    deployment.apply_network(NETWORK)
    slow = {"STOCKSYNC_ORDER_DECISION_S": "120"}  # a restart is no timeout here
    first = deployment.start_worker("first", env={**slow, "STOCKSYNC_CRASH_BEFORE_ORDER_STEP": step})
    a, b = skus_on_different_partitions(deployment.settings.partitions, 2)
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
        for sku in (a, b):
            wms.receipt(sku, "w1", 5, event_id=f"r-{sku}")
        wms.receipt(a, "w2", 5, event_id=f"r2-{a}")
        wms.flush()
        wait_for(lambda: len(reserved(deployment)) == 3, 60, "the receipts")
        pending = web.request_order("cart-k", [(a, 2), (b, 1)], deliver_to=deliver_to)
        assert first.proc.wait(60) == 86, first.log.read_text()[-3000:]
        deployment.start_worker("second", env=slow)
        decision = pending.result(90)
        assert decision.accepted, decision
        assert [(p.location, p.lines) for p in decision.parcels] == [("w1", (("1", 2), ("2", 1)))]
        wait_for(lambda: reserved(deployment) == {f"{a}|w1".encode(): (5, 2), f"{a}|w2".encode(): (5, 0),
                                                  f"{b}|w1".encode(): (5, 1)}, 60, "each line held once")
        # A re-send changes nothing: the same decision, no second hold.
        assert web.reserve_order("cart-k", [(a, 2), (b, 1)], deliver_to=deliver_to, timeout_s=30) == decision
    steps = [record for _, record, _, _ in deployment.read(deployment.registry.order_steps.name)]
    kinds = {step["kind"] for record in steps for step in record.get("steps", [record])}
    assert ("source_hold" in kinds) == (deliver_to is not None) and ("figures" in kinds) == (deliver_to is None)


@pytest.mark.parametrize("step", ["source_hold", "hold_answer", "order_decided"])
def test_a_worker_killed_at_any_step_of_a_one_line_order_leaves_it_held_once(deployment: Deployment,
                                                                             step: str) -> None:
    """A one-line order takes one round (its owner plans and holds the line): the worker dies before committing
    the coordinator's request of the hold, the owner's hold and answer, or the decision; the next worker resumes:
    one decision, the line held once, until the order expires."""
    deployment.apply_network(NETWORK)
    slow = {"STOCKSYNC_ORDER_DECISION_S": "120"}
    first = deployment.start_worker("first", env={**slow, "STOCKSYNC_CRASH_BEFORE_ORDER_STEP": step})
    [sku] = skus_on_different_partitions(deployment.settings.partitions, 1)
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
        wms.receipt(sku, "w1", 5, event_id=f"r-{sku}")
        wms.receipt(sku, "w2", 5, event_id=f"r2-{sku}")
        wms.flush()
        wait_for(lambda: len(reserved(deployment)) == 2, 60, "the receipts")
        pending = web.request_order("one-k", [(sku, 2)], deliver_to=NEAR_W2)
        assert first.proc.wait(60) == 86, first.log.read_text()[-3000:]
        deployment.start_worker("second", env=slow)
        decision = pending.result(90)
        assert decision.accepted, decision
        assert [(p.location, p.lines) for p in decision.parcels] == [("w2", (("1", 2),))]  # the nearest
        wait_for(lambda: reserved(deployment) == {f"{sku}|w1".encode(): (5, 0), f"{sku}|w2".encode(): (5, 2)}, 60,
                 "the line held once")
        steps = [record for _, record, _, _ in deployment.read(deployment.registry.order_steps.name)]
        kinds = {step["kind"] for record in steps for step in record.get("steps", [record])}
        assert "source_hold" in kinds and not kinds & {"ask_figures", "figures", "place_hold", "confirm_hold"}
        assert web.reserve_order("one-k", [(sku, 2)], deliver_to=NEAR_W2, timeout_s=30) == decision
