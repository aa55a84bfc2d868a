"""The faust wiring of a worker: the stock table, the movements agent, the expiry timer, the network follower,
and the /ready and /metrics pages. Thin by design: every decision is in streams.pipeline and streams.domain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.app import create_app
from streams.domain import Network, SkuStock, StockRules
from streams.network_config import parse_network_record
from streams.pipeline import STOCK, Inbound, Pipeline
from streams.records import stock_from_record
from streams.serde import default_codec
from streams.settings import Settings
from streams.topics import TopicRegistry

log = logging.getLogger("stocksync.worker")


class _Outbox:
    """Collects a batch's output records; `deliver` sends them and waits until the broker has them all."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.records: list[tuple[str, bytes, bytes | None, int | None]] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    async def deliver(self) -> None:
        producer = self.app.producer
        pending = [await producer.send(topic, key, value, partition, None, None)
                   for topic, key, value, partition in self.records]
        self.records.clear()
        if pending:
            await asyncio.gather(*pending)
        await producer.flush()  # the table's changelog records too: state is durable before the batch is acked


class _TableStore:
    """The stock table, read and written in the context of an event of the SKU's partition (faust routes a
    table write to the changelog partition, and a RocksDB read to the partition store, of the current event)."""

    def __init__(self, table: Any, stream: Any, events: Sequence[Any]) -> None:
        self.table = table
        self.stream = stream
        self.by_partition = {event.message.partition: event for event in events}

    def _enter(self, partition: int) -> None:
        self.stream._set_current_event(self.by_partition[partition])

    def get(self, sku: str, partition: int) -> bytes | None:
        self._enter(partition)
        value: bytes | None = self.table.get(sku.encode())
        return value

    def put(self, sku: str, value: bytes, partition: int) -> None:
        self._enter(partition)
        self.table[sku.encode()] = value


def build_worker(settings: Settings, servers: str, network: Network, network_version: int) -> faust.App:
    """The faust app of one worker, for the network in force when it starts (it follows later changes)."""
    app = create_app(settings, servers)
    registry = TopicRegistry(settings)
    codec = default_codec()
    pipeline = Pipeline(registry, codec, StockRules(horizon_ms=settings.horizon_ms))
    pipeline.set_network(network, network_version)
    state = {"ready": False, "rebuild_expiries": True}

    inputs = app.topic(*pipeline.input_topics(), key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions, acks=True)
    table = app.Table("stock", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      options=_rocksdb_options(settings))

    def local_stocks() -> Iterator[SkuStock]:
        for _, value in table.items():
            yield stock_from_record(codec.decode_as(value, STOCK)[1])

    @app.agent(inputs, concurrency=1)
    async def movements(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.batch_wait_s):
            outbox = _Outbox(app)
            batch = [Inbound(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                             e.message.value, int(e.message.timestamp * 1000)) for e in events]
            try:
                pipeline.handle(batch, _TableStore(table, stream, events), outbox)
            except Exception as exc:  # noqa: BLE001 - nothing may escape an agent: dead-letter the batch
                log.exception("batch of %d messages failed; dead-lettering it", len(batch))
                outbox.records.clear()
                pipeline.dead_letter_batch(batch, outbox, "internal_error", repr(exc)[:500])
            await outbox.deliver()
            done = time.time()
            for message in batch:
                metrics.INGEST_LATENCY.observe(max(0.0, done - message.timestamp_ms / 1000))

    @app.timer(settings.expiry_interval_s)
    async def expire_reservations() -> None:
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        if state["rebuild_expiries"]:
            state["rebuild_expiries"] = False
            pipeline.rebuild_expiries(local_stocks())
        outbox = _Outbox(app)
        if pipeline.request_expiries(outbox):
            await outbox.deliver()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        state["rebuild_expiries"] = True

    @app.task
    async def follow_network() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False)
        await consumer.start()
        tp = TopicPartition(registry.network.name, 0)
        consumer.assign([tp])
        consumer.seek(tp, network_version + 1)
        try:
            while not app.should_stop:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for message in batches.get(tp, []):
                    found = parse_network_record(message.value)
                    if found is None:
                        log.warning("ignoring network record at offset %d: not a valid network", message.offset)
                        continue
                    added, changed = pipeline.set_network(found, message.offset)
                    log.info("network %d in force: channels added %s, changed %s", message.offset,
                             sorted(added), sorted(changed))
                    if added:
                        _subscribe(app, inputs, pipeline.input_topics())
                    if added | changed:
                        outbox = _Outbox(app)
                        pipeline.republish_ats(local_stocks(), added | changed, outbox)
                        await outbox.deliver()
        finally:
            await consumer.stop()

    @app.task
    async def announce_ready() -> None:
        await app.tables.recovery.completed.wait()
        state["ready"] = True
        log.warning("stocksync worker ready: tables recovered, network %d, %d input topics",
                    pipeline.network_version, len(pipeline.input_topics()))

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        ok = state["ready"] and not app.rebalancing
        return web.json({"ready": ok, "network_version": pipeline.network_version}, status=200 if ok else 503)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.stocksync_pipeline = pipeline  # type: ignore[attr-defined]
    app.stocksync_table = table  # type: ignore[attr-defined]
    return app


def _subscribe(app: faust.App, inputs: Any, topics: list[str]) -> None:
    """Add a new channel's input topics to the running subscription.

    faust has no public call for this: its conductor holds a clone of the agent's topic and re-subscribes the
    consumer when flagged; we extend that clone's topic names and flag it (after a short pause, not faust's 45 s).
    """
    conductor = app.topics
    for channel in list(conductor):
        names = set(getattr(channel, "topics", ()) or ())
        if names and names <= set(topics) and names & set(inputs.topics):
            channel.topics = list(topics)
    conductor._resubscribe_sleep_lock_seconds = 1.0  # type: ignore[attr-defined]
    conductor._flag_changes()  # type: ignore[attr-defined]


def _rocksdb_options(settings: Settings) -> dict[str, int]:
    """Bound RocksDB's memory per partition (faust's defaults allow 2 GiB of block cache per partition)."""
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
            "block_cache_compressed_size": 0}
