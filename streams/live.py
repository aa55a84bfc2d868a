"""The demo's live view: stock of the busiest SKUs per location and per channel, end-to-end latency, and the
oversells that were refused, read from the output topics as any channel would read them."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.channel import start_positions, unassigned_consumer
from streams.domain import Network
from streams.serde import DecodeError, default_codec
from streams.topics import TopicRegistry

WINDOW_S = 30.0  # latency percentiles over this many seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class LiveState:
    positions: dict[tuple[str, str], Mapping[str, int]] = field(default_factory=dict)
    ats: dict[tuple[str, str], int] = field(default_factory=dict)
    activity: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    refused: int = 0
    negative_flags: int = 0
    dead_letters: int = 0
    applied: int = 0
    latencies: deque[tuple[float, float]] = field(default_factory=deque)  # (seen at, ms)


class LiveView:
    """Follows positions and ATS feeds (from the start) and ledger, replies and dead letters (from now).
    `sent_at` maps "channel:event_id" to the epoch ms it was sent (the simulator fills it) for latency."""

    def __init__(self, servers: str, registry: TopicRegistry, network: Network, sent_at: dict[str, int],
                 busy: int = 5) -> None:
        self.registry, self.network, self.sent_at, self.busy = registry, network, sent_at, busy
        self.codec = default_codec()
        self.state = LiveState()
        self.consumer = unassigned_consumer(servers)
        self.kind_of: dict[str, str] = {}
        assignment = []
        for kind, topics, from_start in (
                ("position", [registry.positions.name], True),
                ("ats", [registry.ats(ch).name for ch in network.channels], True),
                ("ledger", [registry.ledger.name], False),
                ("reply", [registry.replies(ch).name for ch in network.channels], False),
                ("deadletter", [registry.deadletter.name], False)):
            for topic in topics:
                self.kind_of[topic] = kind
                assignment += start_positions(self.consumer, topic, from_start)[0]
        self.consumer.assign(assignment)
        self.started = time.time()

    def poll(self, seconds: float) -> None:
        until = time.time() + seconds
        while (left := until - time.time()) > 0:
            for message in self.consumer.consume(500, min(left, 0.2)):
                if message.error() is None and message.value() is not None:
                    try:
                        self._take(self.kind_of[message.topic()], message)
                    except DecodeError:
                        continue
        cutoff = time.time() - WINDOW_S
        while self.state.latencies and self.state.latencies[0][0] < cutoff:
            self.state.latencies.popleft()

    def _take(self, kind: str, message: Any) -> None:
        s = self.state
        _, r = self.codec.decode(message.value())
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
        elif kind == "reply":
            if r["accepted"]:
                s.accepted += 1
            else:
                s.refused += 1
        elif kind == "deadletter":
            s.dead_letters += 1

    def render(self) -> str:
        s = self.state
        latencies = [ms for _, ms in s.latencies]
        locations = sorted(self.network.locations)
        channels = sorted(self.network.channels)
        width = max(12, *(len(x) + 1 for x in locations + channels))
        lines = [
            f"stocksync live — {time.time() - self.started:5.0f} s — {s.applied} movements applied, "
            f"{s.dead_letters} dead letters",
            f"end-to-end latency (sent by a channel -> applied and published), last {WINDOW_S:.0f} s: "
            f"p50 {percentile(latencies, 0.5):.0f} ms  p99 {percentile(latencies, 0.99):.0f} ms  "
            f"({len(latencies)} samples)",
            f"reservations: {s.accepted} accepted, {s.refused} refused = oversells avoided; "
            f"sales beyond known stock flagged: {s.negative_flags}",
            "",
            "available (on hand) per location".ljust(26) + "".join(loc[:width - 1].rjust(width) for loc in locations),
        ]
        busiest = [sku for sku, _ in s.activity.most_common(self.busy)]
        for sku in busiest:
            cells = []
            for loc in locations:
                f = s.positions.get((sku, loc))
                cells.append((f"{f['available']} ({f['on_hand']})" if f else "-").rjust(width))
            lines.append(sku.ljust(26) + "".join(cells))
        lines += ["", "available to sell per channel".ljust(26) + "".join(ch[:width - 1].rjust(width)
                                                                          for ch in channels)]
        for sku in busiest:
            lines.append(sku.ljust(26) + "".join(str(s.ats.get((ch, sku), "-")).rjust(width) for ch in channels))
        return "\n".join(lines)

    def close(self) -> None:
        self.consumer.close()
