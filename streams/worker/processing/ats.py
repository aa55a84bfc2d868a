"""Publishes each channel's available-to-sell, coalesced for channels that ask for it (`coalesce_ms`)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from streams.domain import SkuStock, channel_ats
from streams.domain.catalog import Catalog
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import SingleObjectCodec
from streams.wire.partitioner import sku_partition
from streams.wire.schemas import Schema
from streams.worker.ops.clock import now_ms
from streams.worker.processing.outputs import Outbox
from streams.worker.reference.network_in_force import NetworkInForce


class AtsPublisher:
    """Sends ATS updates to the channels' compacted feeds. A coalescing channel (rate-limited marketplaces) gets at
    most one update per SKU per window, the latest; a drop to zero is never held back. Held updates live only in
    this worker: they are released when due, and all of them before the worker gives its partitions up."""

    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, network: NetworkInForce,
                 catalog: Catalog | None = None) -> None:
        self.registry, self.codec, self.network = registry, codec, network
        # Each update carries the identifier the channel knows the SKU by.
        self.catalog = catalog if catalog is not None else Catalog()
        self._sent_at: dict[tuple[str, str], int] = {}  # (channel, sku) -> last published, coalescing channels
        self._held: dict[tuple[str, str], tuple[int, int, int, int]] = {}  # -> (ats, version, partition, due)

    def publish(self, outbox: Outbox, channel: str, sku: str, ats: int, version: int, partition: int,
                now: int, held_back: bool = False) -> None:
        """Publish a channel's ATS for a SKU, or hold it back while the channel's window since the last update
        of the SKU has not passed (`held_back`: it was held back and is due now). What is held and when each
        update went out is remembered only once the outbox's records are committed."""
        window = self.network.coalesce_ms(channel)
        key = (channel, sku)
        if window and ats > 0 and not held_back:
            last = self._sent_at.get(key)
            if last is not None and now - last < window:
                outbox.on_commit(partial(self._hold, key, (ats, version, partition, last + window)))
                return
        outbox.on_commit(partial(self._sent, key, now if window else None))
        outbox.send_latest(self.registry.ats(channel).name, sku.encode(),
                    self.codec.encode(Schema.ATS_UPDATE, {
                        "channel": channel, "sku": sku, "ats": ats, "version": version,
                        "network_version": self.network.version, "updated_at": now,
                        "alias": self.catalog.alias_of(channel, sku)}), partition)

    def _hold(self, key: tuple[str, str], held: tuple[int, int, int, int]) -> None:
        self._held[key] = held

    def _sent(self, key: tuple[str, str], at: int | None) -> None:
        self._held.pop(key, None)
        if at is not None:
            self._sent_at[key] = at

    def release_held(self, outbox: Outbox, now: int | None = None, everything: bool = False) -> int:
        """Publish the held-back updates that are due (all of them with `everything`); returns how many."""
        now = now if now is not None else now_ms()
        due = [(key, held) for key, held in self._held.items() if everything or held[3] <= now]
        for (channel, sku), (ats, version, partition, _) in due:
            self.publish(outbox, channel, sku, ats, version, partition, now, held_back=True)
        for key, sent_at in list(self._sent_at.items()):  # forget what no longer holds anything back
            if now - sent_at >= self.network.coalesce_ms(key[0]) and key not in self._held:
                del self._sent_at[key]
        return len(due)

    def republish(self, stocks: Iterable[SkuStock], channels: Iterable[str], outbox: Outbox,
                  now: int | None = None) -> int:
        """Publish the ATS of `channels` for every given SKU (a channel added or its rules changed, or partitions
        taken over); returns how many updates."""
        now = now if now is not None else now_ms()
        network = self.network.network
        wanted = [network.channels[ch] for ch in channels if ch in network.channels]
        sent = 0
        for stock in stocks:
            partition = sku_partition(stock.sku, self.registry.partitions)
            for channel in wanted:
                self.publish(outbox, channel.id, stock.sku, channel_ats(stock, channel), stock.version, partition,
                             now)
                sent += 1
        return sent
