"""Where a worker is wired: its collaborators are made here and the jobs faust runs for it are registered.

Every decision is in the pipeline (streams.worker.processing.pipeline) and the domain; faust supplies the consumer
group, the stock table with its changelog and recovery, timers and the web server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import Any, cast

from faust.tables.manager import TableManager

from streams.domain import Network, StockRules
from streams.kafka.aio import librdkafka_only
from streams.kafka.clients import KafkaException, new_admin
from streams.kafka.schema_registry import RegistryCodec, codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import KafkaConnection
from streams.settings import Settings
from streams.worker.api.routes import Api
from streams.worker.flow.batch import Batcher
from streams.worker.flow.reader import InputReader
from streams.worker.flow.transactions import PartitionTransactions
from streams.worker.ops import logfilters, metrics
from streams.worker.ops.disk import DiskRoom
from streams.worker.ops.health import BROKER_PROBE_S, Health
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.orders import sends_step, undecided
from streams.worker.processing.pipeline import Pipeline
from streams.worker.reference.catalog_in_force import CatalogInForce
from streams.worker.reference.network_in_force import NetworkFollower, NetworkInForce
from streams.worker.reference.suggestions import SuggestionIndex
from streams.worker.runtime.app import StocksyncApp, create_app
from streams.worker.runtime.stores import local_store
from streams.worker.runtime.web import AppMembership, mount
from streams.worker.state.changelog import ChangelogRestorer, StandbyFollower
from streams.worker.state.table import StockTable

log = logging.getLogger("stocksync.worker")
METRICS_SAMPLE_S = 5.0  # how often the gauges of readiness, recovery and table size are sampled


class Worker:
    """One worker's collaborators, and the jobs that run outside the batches: expiry, coalesced ATS release,
    rebalance hooks and network changes. Their outputs wait for the batch in flight (Batcher.outside_batch)."""

    def __init__(self, app: StocksyncApp, settings: Settings, servers: KafkaConnection, network: Network,
                 network_version: int) -> None:
        self.app = app
        registry = TopicRegistry(settings)
        codec = codec_for(settings)
        if isinstance(codec, RegistryCodec):  # at the start, not in a batch: a registry's refusal stops the worker
            log.info("schemas in the registry: %s", codec.prepare())
        unread = librdkafka_only(servers.librdkafka)
        if unread:
            log.info("passed-through settings only librdkafka takes (the aiokafka readers run without them): %s",
                     unread)
        table = app.Table("stock", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                          options=rocksdb_options(settings))
        self.table = StockTable(partial(local_store, table), registry.stock_changelog.name, settings.partitions, codec)
        self.network = NetworkInForce(registry)
        self.network.adopt(network, network_version)
        self.catalog = CatalogInForce(servers, registry, codec)
        self.reading = asyncio.Event()  # set once the input reader runs
        self.ats = AtsPublisher(registry, codec, self.network, self.catalog.catalog)
        self.expiries = ExpiryScheduler(registry, codec, self.network)
        self.pipeline = Pipeline(registry, codec, self.network, self.ats, self.expiries,
                                 StockRules(horizon_ms=settings.horizon_ms),
                                 max_record_bytes=settings.max_record_bytes, catalog=self.catalog.catalog,
                                 order_decision_ms=int(settings.order_decision_s * 1000),
                                 order_memory_ms=int(settings.order_memory_s * 1000))
        crash_when = sends_step(settings.crash_before_order_step, registry, codec) \
            if settings.crash_before_order_step else None
        self.transactions = PartitionTransactions(servers, settings.app_id, settings.crash_before_commit,
                                                  on_fenced=app.request_rebalance, crash_when=crash_when)
        self.restorer = ChangelogRestorer(servers, self.table)
        self.standbys = StandbyFollower(servers, self.table)
        app.keeper = self  # recovery and standbys: stocksync's own, not faust's
        app.before_stop.append(self.stop_standbys)
        self.disk = DiskRoom(settings.data_dir, settings.min_free_disk_mb * 2**20)
        self.health = Health(disk_room=self.disk.shortage)
        self.batcher = Batcher(self.transactions, self.table, self.pipeline, settings.max_batch,
                               settings.batch_wait_s, self.health, self.disk)
        self.reader = InputReader(app.assigned_partitions, servers, settings.input_group, self.batcher,
                                  self.network.input_topics, self.health)
        self.admin = new_admin(servers)
        self.follower = NetworkFollower(servers, registry, self.network, self.republish)
        self.suggestions = SuggestionIndex(servers, registry, codec)

    # --- the app's TableKeeper: recovery and standbys instead of faust's ----------------------------------------
    async def fence(self, partitions: set[int]) -> None:
        await self.transactions.fence(partitions)

    async def restore(self, ends: dict[int, int]) -> None:
        """Bring the local store of each table partition taken over up to its changelog's last committed record
        (concurrently: each partition has its own reader), once its disk has room."""
        await self.disk.room("not restoring table partitions", "restoring table partitions")
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, self.restorer.restore, partition, end)
                               for partition, end in sorted(ends.items())))

    def follow_standbys(self, partitions: set[int]) -> None:
        self.standbys.follow(partitions)

    async def stop_standbys(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.standbys.stop)

    def recovered(self) -> bool:
        return not self.app.rebalancing and self.app.recovered.is_set()

    async def read_inputs(self) -> None:
        # A plain asyncio task, stopped by the app before faust stops its consumer and tables (SIGTERM drains).
        # Not before the catalog is read: a movement naming a known alias must never be taken for an unknown one.
        await self.catalog.caught_up.wait()
        self.reader.start()
        self.reading.set()
        self.app.before_stop.append(self.reader.stop)

    async def expire_reservations(self) -> None:
        """Lapsed holds expire; orders past their deadline are told so."""
        if not self.recovered():
            return
        state = self.app.worker_state
        async with self.batcher.outside_batch() as outbox:
            if state.rebuild_expiries:
                state.rebuild_expiries = False
                self.expiries.rebuild(self.table.holds())
                self.pipeline.order_timer.rebuild(undecided(self.table.order_states()), self.table.decided_buckets())
                # A held-back ATS update of a coalescing channel dies with its worker: publish those channels'
                # ATS for every SKU this worker now owns.
                self.ats.republish(self.table.stocks(), self.network.coalesced_channels(), outbox)
            self.expiries.request_due(outbox)
            self.pipeline.order_timer.request_due(outbox)

    async def release_coalesced_ats(self) -> None:
        async with self.batcher.outside_batch() as outbox:
            self.ats.release_held(outbox)

    async def on_revoked(self) -> None:
        await self.reader.on_revoked()  # the batch in hand is finished first
        # Held-back ATS updates go out before another worker takes the SKUs over (it publishes newer ones).
        async with self.batcher.outside_batch() as outbox:
            self.ats.release_held(outbox, everything=True)

    def on_assigned(self) -> None:
        self.app.worker_state.rebuild_expiries = True
        self.reader.on_assigned()

    async def republish(self, channels: set[str]) -> None:
        """Publish the ATS of channels added or changed by a new network, for every SKU this worker holds."""
        async with self.batcher.outside_batch() as outbox:
            self.ats.republish(self.table.stocks(), channels, outbox)

    async def follow_network(self) -> None:
        await self.follower.run(lambda: self.app.should_stop)

    async def follow_catalog(self) -> None:
        await self.catalog.run(lambda: self.app.should_stop)

    async def follow_suggestions(self) -> None:
        await self.suggestions.run(lambda: self.app.should_stop)

    async def probe_broker(self) -> None:
        """Ask Kafka for its metadata: whether it answers is part of readiness."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, partial(self.admin.list_topics, timeout=5))
        except KafkaException as exc:
            self.health.broker_failed(exc.args[0].str())
        else:
            self.health.broker_answered()
        self.admin.poll(0)  # delivers the admin client's librdkafka log lines

    async def sample_metrics(self) -> None:
        """Set the gauges nothing else sets as it happens: readiness, recovery progress, the table's size."""
        metrics.READY.set(0 if self.health.not_ready(self.app.worker_state.ready, self.app.rebalancing) else 1)
        recovery = cast(TableManager, self.app.tables).recovery
        metrics.RECOVERY_REMAINING.labels("active").set(recovery.active_remaining_total()
                                                         + sum(list(self.restorer.remaining.values())))
        metrics.RECOVERY_REMAINING.labels("standby").set(sum(list(self.standbys.remaining.values())))
        sizes = self.table.sizes()
        owned = {str(p) for p in self.transactions.writable()} | {"all"}  # "all": a memory store's one figure
        for gauge in (metrics.TABLE_KEYS, metrics.TABLE_BYTES):
            gauge.clear()  # partitions no longer here are not this worker's
        for partition, (keys, size) in sizes.items():
            role = "active" if partition in owned else "standby"
            metrics.TABLE_KEYS.labels(partition, role).set(keys)
            metrics.TABLE_BYTES.labels(partition, role).set(size)
        for kind, size in self.table.memory().items():
            metrics.TABLE_MEMORY.labels(kind).set(size)

    async def announce_ready(self) -> None:
        await self.app.recovered.wait()
        await self.reading.wait()  # the catalog read, the inputs being read: ready means doing its job
        self.app.worker_state.ready = True
        log.warning("stocksync worker ready: tables recovered, network %d, %d input topics",
                    self.network.version, len(self.network.input_topics()))


def build_worker(settings: Settings, servers: KafkaConnection, network: Network, network_version: int) -> StocksyncApp:
    """The faust app of one worker, for the network in force when it starts (it follows later changes)."""
    logfilters.install()
    app = create_app(settings, servers, committed_only=True)
    worker = Worker(app, settings, servers, network, network_version)
    app.task(worker.read_inputs)
    app.task(worker.follow_network)
    app.task(worker.follow_suggestions)
    app.task(worker.follow_catalog)
    app.task(worker.announce_ready)
    app.timer(settings.expiry_interval_s)(worker.expire_reservations)
    app.timer(0.25)(worker.release_coalesced_ats)
    app.timer(BROKER_PROBE_S)(worker.probe_broker)
    app.timer(METRICS_SAMPLE_S)(worker.sample_metrics)

    def on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> Awaitable[None]:
        return worker.on_revoked()

    def on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        worker.on_assigned()

    # mode's SignalHandlerT (written with mypy_extensions' VarArg/NamedArg) matches no function in mypy's eyes.
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    api = Api(AppMembership(app, worker.table.changelog), worker.table, worker.network, worker.reader,
              worker.health, settings.api_access(), worker.suggestions, worker.catalog.catalog)
    mount(app, api.pages())
    return app


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """Bound RocksDB's memory per partition (faust's defaults allow 2 GiB of block cache per partition)."""
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
            "block_cache_compressed_size": 0}
