"""The topic registry: the one place that names every topic, its key, value schema, partitions and configs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from types import MappingProxyType

from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire.schemas import Schema

CHANNEL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

COMPACTED: Mapping[str, str] = MappingProxyType({
    "cleanup.policy": "compact",
    "min.cleanable.dirty.ratio": "0.1",
    "segment.ms": str(6 * 3600 * 1000),
})

# Configs whose difference on an existing topic changes stocksync's guarantees: reported as a mismatch.
PINNED_CONFIGS = ("cleanup.policy",)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as stocksync expects it on the cluster."""

    name: str
    key: str  # what the message key holds, e.g. "sku"
    value_schema: Schema  # the value's Avro record, a file in schemas/
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    purpose: str = ""


class TopicRegistry:
    """Every topic of one stocksync deployment, derived from the settings (prefix, partitions, retention)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.partitions = settings.partitions

    def _spec(self, suffix: str, key: str, schema: Schema, purpose: str,
              config: Mapping[str, str] | None = None, partitions: int | None = None) -> TopicSpec:
        return TopicSpec(name=f"{self.prefix}.{suffix}", key=key, value_schema=schema,
                         partitions=partitions or self.partitions, config=dict(config or {}), purpose=purpose)

    # --- shared topics -------------------------------------------------------------------------------------
    @cached_property
    def positions(self) -> TopicSpec:
        return self._spec("positions", "sku|location", Schema.POSITION_STATE,
                          "latest state of every position (SKU x location)", COMPACTED)

    @cached_property
    def ledger(self) -> TopicSpec:
        return self._spec("ledger", "sku", Schema.LEDGER_ENTRY,
                          "every applied movement with its cause event and before/after: the audit trail",
                          {"cleanup.policy": "delete", "retention.ms": str(self.settings.ledger_retention_ms)})

    @cached_property
    def deadletter(self) -> TopicSpec:
        return self._spec("deadletter", "source key", Schema.DEAD_LETTER,
                          "input that could not be applied, with the reason and the original bytes",
                          {"cleanup.policy": "delete", "retention.ms": str(self.settings.deadletter_retention_ms)})

    @cached_property
    def network(self) -> TopicSpec:
        # One partition: every worker reads the whole network, in order.
        return self._spec("network", "'network'", Schema.NETWORK_CONFIG,
                          "the locations and channels in force, applied with 'stocksync network apply'", COMPACTED, 1)

    @cached_property
    def expiries(self) -> TopicSpec:
        # One topic for every channel (the channel is in the event id): each input partition costs a worker fetch
        # work, and a topic per channel would add a partition set per channel.
        return self._spec("expiries", "sku", Schema.MOVEMENT,
                          "expiries of lapsed holds, made by the workers (no channel writes here)",
                          {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)})

    @cached_property
    def order_steps(self) -> TopicSpec:
        # Keyed by SKU for what an order's coordinator asks a line's owner, by order id for the answers: every
        # step lands in the partition of the worker that owns its key.
        return self._spec("order-steps", "sku|order id", Schema.ORDER_STEP,
                          "the messages between an order's coordinator and its lines' owners (workers only)",
                          {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)})

    @cached_property
    def catalog(self) -> TopicSpec:
        return self._spec("catalog", "channel|alias", Schema.CATALOG_ENTRY,
                          "the aliases channels know products by, applied with 'stocksync catalog apply'; every "
                          "worker follows it whole", COMPACTED)

    @cached_property
    def transfer_suggestions(self) -> TopicSpec:
        return self._spec("transfer-suggestions", "sku|destination", Schema.TRANSFER_SUGGESTION,
                          "transfers that would bring a location below its minimum back to target; a tombstone "
                          "withdraws one (the network's stock_levels)", COMPACTED)

    @cached_property
    def stock_changelog(self) -> TopicSpec:
        # faust names a table's changelog <app id>-<table>-changelog; created here so its configs are ours.
        return TopicSpec(name=f"{self.settings.app_id}-stock-changelog", key="sku",
                         value_schema=Schema.SKU_HEAD, partitions=self.partitions, config=dict(COMPACTED),
                         purpose="the stock table (per SKU its head and history records; input offsets), for recovery")

    def core(self) -> list[TopicSpec]:
        return [self.positions, self.ledger, self.deadletter, self.network, self.expiries, self.order_steps,
                self.catalog, self.transfer_suggestions, self.stock_changelog]

    # --- per channel ---------------------------------------------------------------------------------------
    def _channel(self, channel: str) -> str:
        if not CHANNEL_ID.match(channel):
            raise ConfigError(f"channel id {channel!r}: use lowercase letters, digits, '-' or '_' (max 63)")
        return f"channel.{channel}"

    @cache  # noqa: B019 - a registry lives as long as its worker or client
    def sales(self, channel: str) -> TopicSpec:
        return self._spec(f"{self._channel(channel)}.sales", "sku|order id", Schema.MOVEMENT_BATCH,
                          f"sales-side movements reported by {channel}, and its orders (OrderRequest)")

    @cache  # noqa: B019 - a registry lives as long as its worker or client
    def restock(self, channel: str) -> TopicSpec:
        return self._spec(f"{self._channel(channel)}.restock", "sku", Schema.MOVEMENT_BATCH,
                          f"supply-side movements reported by {channel}")

    @cache  # noqa: B019 - a registry lives as long as its worker or client
    def replies(self, channel: str) -> TopicSpec:
        return self._spec(f"{self._channel(channel)}.replies", "sku|order id", Schema.RESERVATION_DECISION,
                          f"accepted/refused decisions on {channel}'s reservation requests and orders "
                          "(OrderDecision)",
                          {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)})

    @cache  # noqa: B019 - a registry lives as long as its worker or client
    def ats(self, channel: str) -> TopicSpec:
        return self._spec(f"{self._channel(channel)}.ats", "sku", Schema.ATS_UPDATE,
                          f"available-to-sell per SKU for {channel}; read from the start for full state",
                          COMPACTED)

    def for_channel(self, channel: str) -> list[TopicSpec]:
        return [self.sales(channel), self.restock(channel), self.replies(channel), self.ats(channel)]

    def all(self, channels: Iterable[str] = ()) -> list[TopicSpec]:
        specs = self.core()
        for channel in channels:
            specs += self.for_channel(channel)
        return specs
