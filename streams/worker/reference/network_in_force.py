"""The network a worker applies: the one in force (which channel and side each input topic is), and the follower
that adopts every later version published to the network topic."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from streams.control.network import parse_network_record
from streams.domain import Kind, Network
from streams.domain.movements import SALES_SIDE, SUPPLY_SIDE, WORKER_MADE
from streams.kafka.aio import TopicPartition, new_aio_consumer
from streams.kafka.schema_registry import codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.worker.ops import metrics

log = logging.getLogger("stocksync.worker")


class Route(NamedTuple):
    """What an input topic carries: whose movements (None: the channel named in each worker-made movement), of
    which kinds, and whether the workers made them."""

    channel: str | None
    kinds: frozenset[Kind]
    made_by_worker: bool


class NetworkInForce:
    """The network this worker applies, its version (the offset of its record), and the input topics it implies:
    each channel's sales topic takes the sales-side movements, its restock topic the supply-side ones; the
    expiries topic takes the expiries the workers make of lapsed holds, the order-steps topic the messages of
    orders' coordinators and owners."""

    def __init__(self, registry: TopicRegistry) -> None:
        self.registry = registry
        self.network = Network()
        self.version = -1
        self._routes: dict[str, Route] = {}

    def adopt(self, network: Network, version: int) -> tuple[set[str], set[str]]:
        """Apply a network; returns (channels added, channels whose ATS rules changed)."""
        old = self.network
        added = set(network.channels) - set(old.channels)
        changed = {ch for ch in network.channels if ch in old.channels and old.channels[ch] != network.channels[ch]}
        self.network, self.version = network, version
        self._routes = {}
        for channel in network.channels:
            self._routes[self.registry.sales(channel).name] = Route(channel, SALES_SIDE, False)
            self._routes[self.registry.restock(channel).name] = Route(channel, SUPPLY_SIDE, False)

        self._routes[self.registry.expiries.name] = Route(None, WORKER_MADE, True)
        self._routes[self.registry.order_steps.name] = Route(None, frozenset(), True)
        metrics.NETWORK_VERSION.set(version)
        return added, changed

    def route(self, topic: str) -> Route | None:
        """What `topic` carries; None if no channel of the network reads it."""
        return self._routes.get(topic)

    def input_topics(self) -> list[str]:
        return sorted(self._routes)

    def coalesce_ms(self, channel: str) -> int:
        found = self.network.channels.get(channel)
        return found.coalesce_ms if found is not None else 0

    def coalesced_channels(self) -> set[str]:
        return {ch.id for ch in self.network.channels.values() if ch.coalesce_ms}


class NetworkFollower:
    """Reads the network topic after the version the worker started with; adopts each valid record and hands the
    channels it added or changed to `republish` (their ATS feeds must be filled or recomputed)."""

    def __init__(self, servers: Kafka, registry: TopicRegistry, in_force: NetworkInForce,
                 republish: Callable[[set[str]], Awaitable[None]]) -> None:
        self.servers, self.registry, self.in_force, self.republish = servers, registry, in_force, republish

    async def run(self, should_stop: Callable[[], bool]) -> None:
        consumer = new_aio_consumer(self.servers, group_id=None)
        await consumer.start()
        tp = TopicPartition(self.registry.network.name, 0)
        consumer.assign([tp])
        consumer.seek(tp, self.in_force.version + 1)
        try:
            while not should_stop():
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for message in batches.get(tp, []):
                    found = parse_network_record(message.value, codec_for(self.registry.settings))
                    if found is None:
                        log.warning("ignoring network record at offset %d: not a valid network", message.offset)
                        continue
                    added, changed = self.in_force.adopt(found, message.offset)
                    log.info("network %d in force: channels added %s, changed %s", message.offset,
                             sorted(added), sorted(changed))
                    if added | changed:
                        await self.republish(added | changed)
        finally:
            await consumer.stop()
