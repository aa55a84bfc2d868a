"""A seeded retail network at work: POS sales (one store goes offline and uploads late), web and app orders (carts
of several lines held whole, and one-item sourced reservations) that get paid, cancelled or expire, marketplace
orders, warehouse receipts, transfers to stores, cycle counts, damage set apart and written off, and returns
(back on the shelf, damaged, or inspected and then released or found damaged).

`plan()` is pure: the same network, seed, rate, duration and start time give the same steps, so a run can be
reproduced. `Simulator.run()` sends the steps through one ChannelClient per channel at their times; a reservation's
or a cart's follow-up (paid or cancelled) is sent only if it was accepted.

Roles come from the network: channels selling only from stores are POS, only from warehouses are marketplaces,
the channel with the most locations and no buffer is the warehouse system (receipts, transfers, counts), and the
remaining channels are online shops placing reservations.
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from streams.domain import Kind, Movement, Network, SkuStock
from streams.errors import ConfigError

OFFLINE_EVERY_MS = 60_000  # the offline store loses its connection once a minute ...
OFFLINE_FOR_MS = 20_000  # ... for this long, then uploads what it sold meanwhile
REORDER_POINT = 15  # a warehouse receives more of a SKU only when fewer units than this are available


@dataclass(frozen=True)
class Roles:
    pos: tuple[str, ...]
    online: tuple[str, ...]
    marketplaces: tuple[str, ...]
    warehouse_system: str
    offline_pos: str | None

    @classmethod
    def of(cls, network: Network) -> Roles:
        def kinds(channel: str) -> set[str]:
            return {network.locations[loc].kind for loc in network.channels[channel].locations}

        channels = sorted(network.channels)
        pos = tuple(ch for ch in channels if kinds(ch) == {"store"})
        marketplaces = tuple(ch for ch in channels if kinds(ch) == {"warehouse"})
        rest = [ch for ch in channels if ch not in pos and ch not in marketplaces]
        unbuffered = [ch for ch in rest if network.channels[ch].buffer == 0]
        if not pos or not unbuffered:
            raise ConfigError("simulate: the network needs a channel selling only from stores (POS) and a channel "
                              "without buffer owning the warehouses (the warehouse system)")
        wms = max(unbuffered, key=lambda ch: (len(network.channels[ch].locations), ch))
        online = tuple(ch for ch in rest if ch != wms)
        return cls(pos, online, marketplaces, wms, pos[-1] if len(pos) > 1 else None)


@dataclass(frozen=True)
class Cart:
    """An online order of several lines, held whole or not at all and sourced as one."""

    order_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, units)
    latitude: float
    longitude: float
    mode: str
    occurred_at: int
    expires_at: int


@dataclass(frozen=True)
class CartSettled:
    """A held cart paid (every line shipped) or cancelled (every line released); sent only if it was held."""

    order_id: str
    paid: bool


@dataclass(frozen=True)
class Step:
    """One thing a channel does at `at_ms` (ms after the start): a movement sent as it is (a follow-up of a
    reservation, `needs_accepted`, only if that reservation was accepted), or an online order: a cart placed or
    settled."""

    at_ms: int
    channel: str
    action: Movement | Cart | CartSettled
    needs_accepted: str | None = None

    @property
    def movement(self) -> Movement | None:
        return self.action if isinstance(self.action, Movement) else None


class _Model:
    """What the domain would make of the plan so far: shelves the POS can sell from, stock a count finds,
    units a transfer can move. Deterministic, so the plan stays a pure function of its inputs."""

    def __init__(self, network: Network, start_ms: int) -> None:
        self.network, self.start_ms = network, start_ms
        self.stocks: dict[str, SkuStock] = {}
        self.expired_until = 0
        self.future: list[tuple[int, int, Movement]] = []  # planned for later: applied when the plan gets there
        self.order = itertools.count()

    def apply(self, m: Movement, at: int, now: int) -> None:
        if at > now:
            heapq.heappush(self.future, (at, next(self.order), m))
            return
        stock = self.stocks.setdefault(m.sku, SkuStock(m.sku))
        stock.apply(m, self.network, self.start_ms + at)

    def advance(self, now: int) -> None:
        while self.future and self.future[0][0] <= now:
            at, _, m = heapq.heappop(self.future)
            self.apply(m, at, at)

    def on_hand(self, sku: str, location: str) -> int:
        stock = self.stocks.get(sku)
        return 0 if stock is None else stock.position(location).on_hand

    def available(self, sku: str, location: str) -> int:
        stock = self.stocks.get(sku)
        return 0 if stock is None else stock.available(location)

    def expire(self, at: int) -> None:
        """Let due reservations lapse, as the workers' expiry timer does (checked once a simulated second)."""
        if at - self.expired_until < 1_000:
            return
        self.expired_until = at
        for stock in self.stocks.values():
            for expiry in stock.due_expiries(self.start_ms + at):
                stock.apply(expiry, self.network, self.start_ms + at)


def plan(network: Network, *, seed: int, rate: float, duration_s: float, skus: int = 40,
         start_ms: int = 0) -> list[Step]:
    """Every step of a run, ordered by time: opening stock, then about `rate` events a second."""
    return list(planned(network, seed=seed, rate=rate, duration_s=duration_s, skus=skus, start_ms=start_ms))


def planned(network: Network, *, seed: int, rate: float, duration_s: float, skus: int = 40,
            start_ms: int = 0) -> Iterator[Step]:
    """The steps of `plan`, made as they are taken: a run starts sending at once, however long it lasts (an hour
    planned up front took half a minute)."""
    if rate <= 0 or duration_s <= 0 or skus <= 0:
        raise ConfigError("simulate: rate, duration and skus must be positive")
    rnd = random.Random(seed)
    roles = Roles.of(network)
    sku_ids = [f"SKU-{i:05d}" for i in range(skus)]
    popularity = [1 / (i + 1) for i in range(skus)]  # a few busy SKUs, a long tail
    stores = sorted(loc for loc, spec in network.locations.items() if spec.kind == "store")
    warehouses = sorted(loc for loc, spec in network.locations.items() if spec.kind == "warehouse")
    wms_locations = sorted(network.channels[roles.warehouse_system].locations)
    model = _Model(network, start_ms)
    clock = 0  # the plan's "now": movements planned for later reach the model when it gets there
    # Steps planned and not yet taken, by time (then in the order planned): a step is planned at the plan's
    # time or later, so those at or before it are final.
    pending: list[tuple[int, int, Step]] = []
    serial = iter(range(10**12))
    order = iter(range(10**12))

    def push(step: Step) -> None:
        heapq.heappush(pending, (step.at_ms, next(order), step))

    def taken(until: int) -> Iterator[Step]:
        while pending and pending[0][0] <= until:
            yield heapq.heappop(pending)[2]

    def event_id(prefix: str) -> str:
        # The start time makes ids unique per run: a second run with the same seed is not taken for re-sends.
        return f"{prefix}-{seed}-{start_ms}-{next(serial)}"

    def add(at: int, channel: str, kind: Kind, sku: str, location: str | None, quantity: int, *,
            needs: str | None = None, send: bool = True, **extra: Any) -> Movement:
        m = Movement(kind, event_id(kind.value), channel, sku, location, quantity, start_ms + at, **extra)
        model.apply(m, at, clock)
        if send:
            push(Step(at, channel, m, needs))
        return m

    def cart(at: int, channel: str) -> None:
        """A customer's cart of 1 to 4 busy SKUs, held (the model holds each line where the channel has most) and
        then paid, cancelled or left to expire."""
        order_id = event_id(f"cart-{channel}")
        lines = tuple((sku, rnd.randint(1, 2)) for sku in sorted({busy_sku() for _ in range(rnd.randint(1, 4))}))
        where = customer()
        placed = Cart(order_id, lines, where["latitude"], where["longitude"], where["mode"], start_ms + at,
                      start_ms + at + 20_000)
        push(Step(at, channel, placed))
        for number, (sku, units) in enumerate(lines, start=1):
            add(at, channel, Kind.RESERVATION_PLACED, sku, None, units, send=False,
                reservation_id=f"{order_id}/{number}", expires_at=placed.expires_at)
        outcome, later = rnd.random(), at + rnd.randint(2_000, 12_000)
        if outcome < 0.85:
            paid = outcome < 0.6
            push(Step(later, channel, CartSettled(order_id, paid)))
            for number, (sku, _) in enumerate(lines, start=1):
                add(later, channel, Kind.RESERVATION_FULFILLED if paid else Kind.RESERVATION_RELEASED, sku, None, 0,
                    send=False, reservation_id=f"{order_id}/{number}")

    def busy_sku() -> str:
        return rnd.choices(sku_ids, popularity)[0]

    latitudes = [spec.latitude for spec in network.locations.values()]
    longitudes = [spec.longitude for spec in network.locations.values()]

    def customer() -> dict[str, Any]:
        """Where an online order goes (somewhere around the network), and how: mostly shipped, some collected."""
        return {"latitude": round(rnd.uniform(min(latitudes) - 0.5, max(latitudes) + 0.5), 4),
                "longitude": round(rnd.uniform(min(longitudes) - 0.5, max(longitudes) + 0.5), 4),
                "mode": "pickup" if rnd.random() < 0.2 else "ship"}

    for sku in sku_ids:  # opening stock
        for location in wms_locations:
            units = rnd.randint(10, 30) if location in warehouses else rnd.randint(5, 15)
            add(0, roles.warehouse_system, Kind.RECEIPT, sku, location, units)

    duration_ms = int(duration_s * 1000)
    at = 1_000
    offline_buffer: list[Movement] = []
    while True:
        at += max(1, int(rnd.expovariate(rate) * 1000))
        if at >= duration_ms:
            break
        clock = at
        model.advance(at)
        roll = rnd.random()
        if roll < 0.38:  # a POS basket
            channel = rnd.choice(roles.pos)
            store = rnd.choice(sorted(network.channels[channel].locations))
            offline = channel == roles.offline_pos and at % OFFLINE_EVERY_MS < OFFLINE_FOR_MS
            for sku in sorted({busy_sku() for _ in range(rnd.randint(1, 3))}):
                units = rnd.randint(1, 2)
                if model.available(sku, store) < units and rnd.random() > 0.02:
                    continue  # a customer can only buy what is on the shelf (rarely, stock the system missed)
                sale = add(at, channel, Kind.SALE, sku, store, units, send=not offline)
                if offline:
                    offline_buffer.append(sale)
        elif roll < 0.52 and roles.online:  # an online cart: held whole, then paid, cancelled or left to expire
            cart(at, rnd.choice(roles.online))
        elif roll < 0.62 and roles.online:  # a one-item order: a sourced reservation, then paid or cancelled
            channel = rnd.choice(roles.online)
            reservation = event_id(f"order-{channel}")
            sku = add(at, channel, Kind.RESERVATION_PLACED, busy_sku(), None, rnd.randint(1, 2),  # sourced: held
                      reservation_id=reservation, expires_at=start_ms + at + 20_000, **customer()).sku  # as planned
            outcome = rnd.random()
            later = at + rnd.randint(2_000, 12_000)
            if outcome < 0.6:
                add(later, channel, Kind.RESERVATION_FULFILLED, sku, None, 0, needs=reservation,
                    reservation_id=reservation)
            elif outcome < 0.85:
                add(later, channel, Kind.RESERVATION_RELEASED, sku, None, 0, needs=reservation,
                    reservation_id=reservation)
        elif roll < 0.72 and roles.marketplaces:  # a marketplace order, paid at once
            channel = rnd.choice(roles.marketplaces)
            reservation = event_id(f"order-{channel}")
            sku = busy_sku()
            add(at, channel, Kind.RESERVATION_PLACED, sku, None, 1, reservation_id=reservation,
                expires_at=start_ms + at + 60_000)
            add(at + 1_500, channel, Kind.RESERVATION_FULFILLED, sku, None, 0, needs=reservation,
                reservation_id=reservation)
        elif roll < 0.75:  # a return at a store: back on the shelf, or inspected first (then released or damaged)
            channel = rnd.choice(roles.pos)
            sku, store = busy_sku(), rnd.choice(sorted(network.channels[channel].locations))
            disposition = rnd.choices(("sellable", "inspect", "damaged"), (5, 4, 1))[0]
            add(at, channel, Kind.RETURN, sku, store, 1, disposition=disposition, returned_via="store",
                resellable=disposition == "sellable", reason="customer return")
            if disposition == "inspect":  # inspected at the store a few seconds later
                add(at + rnd.randint(4_000, 10_000), channel, Kind.ADJUSTMENT, sku, store, 1,
                    state="quality_control", to_state=rnd.choice(("sellable", "sellable", "sellable", "damaged")),
                    reason="inspected")
        elif roll < 0.86:  # a warehouse receipt, when the SKU is down to its reorder point there
            sku, location = busy_sku(), rnd.choice(warehouses or wms_locations)
            if model.available(sku, location) < REORDER_POINT:
                add(at, roles.warehouse_system, Kind.RECEIPT, sku, location, rnd.randint(10, 25))
        elif roll < 0.92 and warehouses and stores:  # a transfer from a warehouse to a store, received later
            sku, source, target = busy_sku(), rnd.choice(warehouses), rnd.choice(stores)
            units = min(rnd.randint(2, 6), model.available(sku, source))
            if units <= 0:
                continue
            transfer = event_id("transfer")
            add(at, roles.warehouse_system, Kind.TRANSFER_OUT, sku, source, units, other_location=target,
                transfer_id=transfer)
            add(at + rnd.randint(3_000, 15_000), roles.warehouse_system, Kind.TRANSFER_IN, sku, target, units,
                other_location=source, transfer_id=transfer)
        elif roll < 0.95:  # a cycle count, finding a little shrinkage now and then
            sku, location = busy_sku(), rnd.choice(wms_locations)
            counted = max(0, model.on_hand(sku, location) - rnd.choice((0, 0, 0, 1)))
            add(at, roles.warehouse_system, Kind.COUNT, sku, location, counted)
        else:  # damage found at a store: set apart, then written off
            sku, location = busy_sku(), rnd.choice(stores or wms_locations)
            if model.available(sku, location) > 0:
                add(at, roles.warehouse_system, Kind.ADJUSTMENT, sku, location, 1, to_state="damaged",
                    reason="found on the shelf")
                add(at + rnd.randint(4_000, 10_000), roles.warehouse_system, Kind.ADJUSTMENT, sku, location, 1,
                    state="damaged", to_state="written_off", reason="damage")
        if offline_buffer and at % OFFLINE_EVERY_MS >= OFFLINE_FOR_MS:  # back online: upload what was sold
            for sale in offline_buffer:
                push(Step(at, sale.channel, sale))
            offline_buffer.clear()
        model.expire(at)
        yield from taken(at)
    # The offline store comes back before the run ends: what it sold meanwhile is uploaded then.
    for sale in offline_buffer:
        push(Step(duration_ms, sale.channel, sale))
    yield from taken(duration_ms + 10**9)


@dataclass
class Stats:
    sent: int = 0
    late_uploads: int = 0
    accepted: int = 0
    refused: int = 0
    skipped_follow_ups: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    carts_accepted: int = 0
    carts_refused: int = 0


class Simulator:
    """Sends a plan through real channel clients (`clients(channel)` makes one) at the plan's pace."""

    def __init__(self, network: Network, clients: Callable[[str], Any], *, seed: int, rate: float,
                 duration_s: float, skus: int = 40) -> None:
        self.network = network
        self.clients_for = clients
        self.seed, self.rate, self.duration_s, self.skus = seed, rate, duration_s, skus
        self.stats = Stats()
        self.decisions: dict[str, Future[Any]] = {}
        self.carts: dict[str, Future[Any]] = {}
        self.settled: list[Movement] = []  # what paying or cancelling the held carts sent (each line's movement)
        self.start_ms = 0
        self.steps: list[Step] = []  # those taken so far, in order
        self.sent_at: dict[str, int] = {}  # "channel:event_id" -> epoch ms sent (the live view's latency)

    def run(self, progress: Callable[[Stats, float], None] | None = None, should_stop: Callable[[], bool] =
            lambda: False) -> Stats:
        start = time.time()
        self.start_ms = int(start * 1000)
        steps = planned(self.network, seed=self.seed, rate=self.rate, duration_s=self.duration_s, skus=self.skus,
                        start_ms=self.start_ms)
        clients: dict[str, Any] = {}
        next_report = start + 5
        try:
            for step in steps:
                if should_stop():
                    break
                wait = start + step.at_ms / 1000 - time.time()
                if wait > 0:
                    time.sleep(wait)
                if step.channel not in clients:
                    clients[step.channel] = self.clients_for(step.channel)
                self.steps.append(step)
                self._send(clients[step.channel], step)
                if progress is not None and time.time() >= next_report:
                    progress(self.stats, time.time() - start)
                    next_report += 5
        finally:
            for client in clients.values():
                client.close()
        self._count_decisions()
        return self.stats

    def _send(self, client: Any, step: Step) -> None:
        if isinstance(step.action, (Cart, CartSettled)):
            self._send_cart(client, step.action)
            return
        m = step.action
        if step.needs_accepted is not None:
            decision = self.decisions.get(step.needs_accepted)
            if decision is None or not decision.done() or not decision.result().accepted:
                self.stats.skipped_follow_ups += 1
                return
        if m.kind is Kind.RESERVATION_PLACED:
            self.decisions[m.reservation_id or ""] = client.request_reservation(
                m.sku, m.quantity, reservation_id=m.reservation_id, location=m.location,
                ttl_s=((m.expires_at or 0) - m.occurred_at) / 1000, event_id=m.event_id, occurred_at=m.occurred_at,
                deliver_to=(m.latitude, m.longitude) if m.latitude is not None and m.longitude is not None else None,
                mode=m.mode or "ship")
        else:
            client.send(m)
        self.sent_at[m.key] = int(time.time() * 1000)
        self.stats.sent += 1
        self.stats.by_kind[m.kind.value] = self.stats.by_kind.get(m.kind.value, 0) + 1
        if m.occurred_at < self.start_ms + step.at_ms:  # sold while the store was offline
            self.stats.late_uploads += 1
        if len(self.decisions) % 50 == 0:
            self._count_decisions()

    def _send_cart(self, client: Any, action: Cart | CartSettled) -> None:
        if isinstance(action, Cart):
            self.carts[action.order_id] = client.request_order(
                action.order_id, action.lines, deliver_to=(action.latitude, action.longitude), mode=action.mode,
                expires_at=action.expires_at, occurred_at=action.occurred_at)
            self.stats.by_kind["cart"] = self.stats.by_kind.get("cart", 0) + 1
        else:
            found = self.carts.get(action.order_id)
            if found is None or not found.done() or found.exception() is not None or not found.result().accepted:
                self.stats.skipped_follow_ups += 1
                return
            settle = client.fulfil_order if action.paid else client.release_order
            now = int(time.time() * 1000)
            for movement in settle(found.result()):
                self.sent_at[movement.key] = now
                self.settled.append(movement)
            kind = "cart_paid" if action.paid else "cart_cancelled"
            self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        self.stats.sent += 1

    def _count_decisions(self) -> None:
        done = [f.result() for f in self.decisions.values() if f.done() and f.exception() is None]
        self.stats.accepted = sum(1 for d in done if d.accepted)
        self.stats.refused = sum(1 for d in done if not d.accepted)
        carts = [f.result() for f in self.carts.values() if f.done() and f.exception() is None]
        self.stats.carts_accepted = sum(1 for d in carts if d.accepted)
        self.stats.carts_refused = sum(1 for d in carts if not d.accepted)


def print_progress(stats: Stats, elapsed_s: float, out: Any = sys.stderr) -> None:
    print(f"[simulate] {elapsed_s:6.0f} s  sent {stats.sent:7d} ({stats.sent / max(elapsed_s, 1e-9):5.0f}/s)  "
          f"reservations accepted {stats.accepted} refused {stats.refused}  carts accepted {stats.carts_accepted} "
          f"refused {stats.carts_refused}  late POS uploads {stats.late_uploads}",
          file=out, flush=True)

