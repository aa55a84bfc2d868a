"""The demo's live view: stock of the busiest SKUs per location and per channel, end-to-end latency, the
oversells that were refused, and orders accepted and refused with their parcels, read from the output topics as
any channel would read them."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from itertools import pairwise
from typing import Any

from streams.domain import Network
from streams.domain.movements import UNSELLABLE_STATES
from streams.kafka.clients import start_positions, unassigned_consumer
from streams.kafka.schema_registry import codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.wire.codec import DecodeError
from streams.wire.schemas import Schema

WINDOW_S = 30.0  # latency percentiles over this many seconds
SUGGESTIONS_SHOWN = 10
HISTORY_S = 300  # the charts show the last five minutes, a sample a second


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class LiveState:
    positions: dict[tuple[str, str], Mapping[str, int]] = field(default_factory=dict)
    ats: dict[tuple[str, str], int] = field(default_factory=dict)
    suggestions: dict[bytes, Mapping[str, Any]] = field(default_factory=dict)  # in force, by "sku|destination"
    activity: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    refused: int = 0
    orders_accepted: int = 0
    orders_refused: int = 0
    parcels: int = 0  # of the accepted orders
    negative_flags: int = 0
    dead_letters: int = 0
    applied: int = 0
    latencies: deque[tuple[float, float]] = field(default_factory=deque)  # (seen at, ms)
    # One sample a second for the charts: (time, movements applied, latency p50 and p99 in ms, the chart
    # channel's ATS of the SKUs busiest then).
    samples: deque[tuple[float, int, float, float, dict[str, int]]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_S))


class LiveView:
    """Follows positions and ATS feeds (from the start) and ledger, replies and dead letters (from now).
    `sent_at` maps "channel:event_id" to the epoch ms it was sent (the simulator fills it) for latency."""

    def __init__(self, servers: Kafka, registry: TopicRegistry, network: Network, sent_at: dict[str, int],
                 busy: int = 5) -> None:
        self.registry, self.network, self.sent_at, self.busy = registry, network, sent_at, busy
        self.codec = codec_for(registry.settings)
        self.state = LiveState()
        self.consumer = unassigned_consumer(servers, registry.positions.name)
        self.kind_of: dict[str, str] = {}
        assignment = []
        for kind, topics, from_start in (
                ("position", [registry.positions.name], True),
                ("ats", [registry.ats(ch).name for ch in network.channels], True),
                ("ledger", [registry.ledger.name], False),
                ("reply", [registry.replies(ch).name for ch in network.channels], False),
                ("deadletter", [registry.deadletter.name], False),
                ("suggestion", [registry.transfer_suggestions.name], True)):
            for topic in topics:
                self.kind_of[topic] = kind
                assignment += start_positions(self.consumer, topic, from_start)[0]
        self.consumer.assign(assignment)
        self.started = time.time()
        # The ATS chart follows the channel that sells from the most locations (a web shop, typically).
        self.chart_channel = max(sorted(network.channels), key=lambda c: len(network.channels[c].locations))

    def poll(self, seconds: float) -> None:
        until = time.time() + seconds
        while (left := until - time.time()) > 0:
            for message in self.consumer.consume(500, min(left, 0.2)):
                kind = self.kind_of.get(message.topic() or "")
                if kind == "suggestion" and message.error() is None and message.value() is None:
                    self.state.suggestions.pop(message.key() or b"", None)  # withdrawn
                elif kind is not None and message.error() is None and message.value() is not None:
                    try:
                        self._take(kind, message)
                    except DecodeError:
                        continue
        now = time.time()
        while self.state.latencies and self.state.latencies[0][0] < now - WINDOW_S:
            self.state.latencies.popleft()
        if not self.state.samples or now - self.state.samples[-1][0] >= 1.0:
            self._sample(now)

    def _sample(self, now: float) -> None:
        s = self.state
        latencies = [ms for _, ms in s.latencies]
        # The busiest SKUs, and those sampled last time (up to twice as many): a SKU that drops a few places
        # for a second keeps its line unbroken.
        tracked = dict.fromkeys(sku for sku, _ in s.activity.most_common(self.busy * 2))
        for sku in s.samples[-1][4] if s.samples else ():
            if len(tracked) >= self.busy * 4:
                break
            tracked.setdefault(sku)
        ats = {sku: s.ats[(self.chart_channel, sku)] for sku in tracked if (self.chart_channel, sku) in s.ats}
        s.samples.append((now, s.applied, percentile(latencies, 0.5), percentile(latencies, 0.99), ats))

    def _take(self, kind: str, message: Any) -> None:
        s = self.state
        name, r = self.codec.decode(message.value())
        if kind == "position":
            s.positions[(r["sku"], r["location"])] = r["figures"]
        elif kind == "ats":
            s.ats[(r["channel"], r["sku"])] = r["ats"]
        elif kind == "ledger":
            s.applied += 1
            s.activity[r["sku"]] += 1
            s.negative_flags += sum(1 for a in r["anomalies"] if "negative" in a)
            sent = self.sent_at.pop(f"{r['channel']}:{r['event_id']}", None)
            if sent is not None:
                _, published = message.timestamp()
                s.latencies.append((time.time(), max(0.0, published - sent)))
        elif kind == "reply" and name == Schema.ORDER_DECISION:
            if r["accepted"]:
                s.orders_accepted += 1
                s.parcels += len(r["parcels"])
            else:
                s.orders_refused += 1
        elif kind == "reply":
            if r["accepted"]:
                s.accepted += 1
            else:
                s.refused += 1
        elif kind == "deadletter":
            s.dead_letters += 1
        elif kind == "suggestion":
            s.suggestions[message.key() or b""] = r

    def snapshot(self) -> dict[str, Any]:
        """What the view shows, JSON-ready (the terminal and the web page draw the same)."""
        s = self.state
        latencies = [ms for _, ms in s.latencies]
        busiest = [sku for sku, _ in s.activity.most_common(self.busy)]
        locations = sorted(self.network.locations)
        channels = sorted(self.network.channels)
        return {
            "elapsed_s": round(time.time() - self.started), "applied": s.applied, "dead_letters": s.dead_letters,
            "latency_ms": {"p50": round(percentile(latencies, 0.5)), "p99": round(percentile(latencies, 0.99)),
                           "samples": len(latencies), "window_s": WINDOW_S},
            "reservations": {"accepted": s.accepted, "refused": s.refused}, "negative_flags": s.negative_flags,
            "orders": {"accepted": s.orders_accepted, "refused": s.orders_refused,
                       "parcels_per_order": round(s.parcels / s.orders_accepted, 2) if s.orders_accepted else 0.0},
            "not_sellable": {state: sum(f.get(state, 0) for f in s.positions.values())
                             for state in UNSELLABLE_STATES},
            "locations": locations, "channels": channels,
            "charts": self._charts(busiest),
            "suggestions": [{k: s.suggestions[key][k] for k in ("sku", "source", "destination", "units", "reason")}
                            for key in sorted(s.suggestions)[:SUGGESTIONS_SHOWN]],
            "suggestions_total": len(s.suggestions),
            "skus": [{"sku": sku,
                      "positions": {loc: dict(s.positions[(sku, loc)]) for loc in locations
                                    if (sku, loc) in s.positions},
                      "ats": {ch: s.ats[(ch, sku)] for ch in channels if (ch, sku) in s.ats}}
                     for sku in busiest],
        }

    def _charts(self, busiest: list[str]) -> dict[str, Any]:
        """The last minutes as series, one point a second: movements applied per second, latency p50/p99, and
        the chart channel's ATS of today's busiest SKUs (None where a SKU had no ATS yet)."""
        samples = list(self.state.samples)
        seconds = [round(t - self.started, 1) for t, *_ in samples]
        rate = [0.0] + [round((b[1] - a[1]) / max(1e-3, b[0] - a[0]), 1) for a, b in pairwise(samples)]
        return {"seconds": seconds, "throughput": rate, "p50_ms": [round(x[2]) for x in samples],
                "p99_ms": [round(x[3]) for x in samples], "ats_channel": self.chart_channel,
                "ats": {sku: [x[4].get(sku) for x in samples] for sku in busiest}}

    def render(self) -> str:
        view = self.snapshot()
        latency, reservations, orders = view["latency_ms"], view["reservations"], view["orders"]
        locations, channels = view["locations"], view["channels"]
        width = max(12, *(len(x) + 1 for x in locations + channels))
        lines = [
            f"stocksync live — {view['elapsed_s']:5d} s — {view['applied']} movements applied, "
            f"{view['dead_letters']} dead letters",
            f"end-to-end latency (sent by a channel -> applied and published), last {WINDOW_S:.0f} s: "
            f"p50 {latency['p50']} ms  p99 {latency['p99']} ms  ({latency['samples']} samples)",
            f"reservations: {reservations['accepted']} accepted, {reservations['refused']} refused = oversells "
            f"avoided; sales beyond known stock flagged: {view['negative_flags']}",
            f"orders (carts held whole or not at all): {orders['accepted']} accepted, {orders['refused']} refused; "
            f"{orders['parcels_per_order']} parcels per accepted order",
            "on hand but not sellable: " + ", ".join(f"{units} {state.replace('_', ' ')}"
                                                     for state, units in view["not_sellable"].items()),
            "",
            "available (on hand) per location".ljust(26) + "".join(loc[:width - 1].rjust(width) for loc in locations),
        ]
        for row in view["skus"]:
            cells = []
            for loc in locations:
                f = row["positions"].get(loc)
                cells.append((f"{f['available']} ({f['on_hand']})" if f else "-").rjust(width))
            lines.append(row["sku"].ljust(26) + "".join(cells))
        lines += ["", "available to sell per channel".ljust(26) + "".join(ch[:width - 1].rjust(width)
                                                                          for ch in channels)]
        for row in view["skus"]:
            lines.append(row["sku"].ljust(26) + "".join(str(row["ats"].get(ch, "-")).rjust(width)
                                                        for ch in channels))
        if view["suggestions"]:
            lines += ["", f"transfer suggestions ({view['suggestions_total']} in force)"]
            lines += [f"  {t['sku']}: {t['units']} from {t['source']} to {t['destination']} ({t['reason']})"
                      for t in view["suggestions"]]
        return "\n".join(lines)

    def close(self) -> None:
        self.consumer.close()


PAGE = resources.files("streams.dev").joinpath("live.html").read_bytes()


class WebView:
    """Serves the live view as a small web page (GET /) and its data (GET /state) from a background thread."""

    def __init__(self, port: int) -> None:
        self.latest = b"{}"
        view = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path in ("/", "/index.html"):
                    body, kind = PAGE, "text/html; charset=utf-8"
                elif self.path == "/state":
                    body, kind = view.latest, "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="stocksync-live-web", daemon=True)
        self.thread.start()

    def publish(self, snapshot: dict[str, Any]) -> None:
        self.latest = json.dumps(snapshot).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
