"""The faust wiring of a worker: the stock table, the input reader (streams.inputs), the expiry timer, the
network follower, and the web pages (/ready, /metrics, the query API). Thin by design: every decision is in
streams.pipeline and streams.domain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streams.api import OPENAPI, ApiError, QueryService, check_sku
from streams.app import StocksyncApp, create_app
from streams.domain import Network, SkuStock, StockRules
from streams.network_config import parse_network_record
from streams.partitioning import sku_partition
from streams.inputs import Batcher, InputReader
from streams.outputs import OutputProducer
from streams.pipeline import STOCK, Pipeline
from streams.records import stock_from_record
from streams.serde import default_codec
from streams.settings import Settings
from streams.topics import TopicRegistry

log = logging.getLogger("stocksync.worker")


def build_worker(settings: Settings, servers: str, network: Network, network_version: int) -> StocksyncApp:
    """The faust app of one worker, for the network in force when it starts (it follows later changes)."""
    app = create_app(settings, servers)
    registry = TopicRegistry(settings)
    codec = default_codec()
    table = app.Table("stock", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      options=_rocksdb_options(settings))
    producer = OutputProducer(servers)

    def confirmed(topic: str, partition: int) -> int | None:
        """Where the partition's movements with delivered outputs end: they will not come again."""
        return batcher.recorded_offsets(partition).get(topic)

    pipeline = Pipeline(registry, codec, StockRules(horizon_ms=settings.horizon_ms), confirmed)
    pipeline.set_network(network, network_version)
    batcher = Batcher(producer, table, pipeline, settings.max_batch, settings.batch_wait_s)
    reader = InputReader(app, servers, settings.input_group, batcher, pipeline.input_topics,
                         registry.stock_changelog.name)
    state: dict[str, Any] = {"ready": False, "rebuild_expiries": True}

    def local_stocks() -> Iterator[SkuStock]:
        for key, value in table.items():
            if key.startswith(b"\x00"):  # the InputOffsets records
                continue
            yield stock_from_record(codec.decode_as(value, STOCK)[1])

    @app.task
    async def read_inputs() -> None:
        # A plain asyncio task, stopped by the app before faust stops its consumer and tables (SIGTERM drains).
        reader.start()
        app.before_stop.append(reader.stop)

    @app.timer(settings.expiry_interval_s)
    async def expire_reservations() -> None:
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        async with batcher.outside_batch() as outbox:
            if state["rebuild_expiries"]:
                state["rebuild_expiries"] = False
                pipeline.rebuild_expiries(local_stocks())
                # A held-back ATS update of a coalescing channel is lost if its worker dies: publish those
                # channels' ATS for every SKU this worker now owns.
                pipeline.republish_ats(local_stocks(), pipeline.coalesced_channels(), outbox)
            pipeline.request_expiries(outbox)

    @app.timer(0.25)
    async def release_coalesced_ats() -> None:
        async with batcher.outside_batch() as outbox:
            pipeline.release_held_ats(outbox)

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        await reader.on_revoked()  # the batch in hand is finished first
        # Held-back ATS updates go out before another worker takes the SKUs over (it publishes newer ones).
        async with batcher.outside_batch() as outbox:
            pipeline.release_held_ats(outbox, everything=True)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        state["rebuild_expiries"] = True
        reader.on_assigned()

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
                    if added | changed:
                        async with batcher.outside_batch() as outbox:
                            pipeline.republish_ats(local_stocks(), added | changed, outbox)
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
        return web.json({"ready": ok, "network_version": pipeline.network_version,
                         "assigned_inputs": reader.assigned_topics()},
                        status=200 if ok else 503)

    query = QueryService(lookup=lambda sku: _stock_of(table, codec, sku),
                         network=lambda: (pipeline.network, pipeline.network_version))
    changelog = registry.stock_changelog.name

    async def answer(web: Any, request: Any, sku: str, compute: Callable[[], dict[str, Any]]) -> Any:
        """Answer here if this worker owns the SKU's partition, else ask the owner (once)."""
        try:
            check_sku(sku)
            partition = sku_partition(sku, settings.partitions)
            owner = next((url for url, topics in app.router.table_metadata("stock").items()
                          if partition in topics.get(changelog, ())), None)
            if owner is None or not state["ready"]:
                raise ApiError(503, "the SKU's owner is not known right now (workers rebalancing); retry")
            if URL(owner) != URL(str(app.conf.canonical_url)):
                if request.headers.get(ROUTED_HEADER):
                    raise ApiError(503, "ownership of the SKU is moving between workers; retry")
                return await _forward(app, web, request, owner)
            return web.json(compute())
        except ApiError as exc:
            return web.json({"error": exc.message}, status=exc.status)

    @app.page("/skus/{sku}/positions")
    async def sku_positions(web: Any, request: Any, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.positions(sku))

    @app.page("/skus/{sku}/positions/{location}")
    async def one_position(web: Any, request: Any, sku: str, location: str) -> Any:
        return await answer(web, request, sku, lambda: query.position(sku, location))

    @app.page("/channels/{channel}/ats/{sku}")
    async def ats_of_channel(web: Any, request: Any, channel: str, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.channel_ats(channel, sku))

    @app.page("/skus/{sku}/sourcing")
    async def sourcing(web: Any, request: Any, sku: str) -> Any:
        return await answer(web, request, sku, lambda: query.sourcing(sku, dict(request.query)))

    @app.page("/openapi.json")
    async def openapi(web: Any, request: Any) -> Any:
        return web.json(OPENAPI)

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


ROUTED_HEADER = "X-Stocksync-Routed"


async def _forward(app: faust.App, web: Any, request: Any, owner: str) -> Any:
    """Ask the owning worker the same question and pass its answer on."""
    url = URL(owner).with_path(request.url.path).with_query(request.url.query)
    try:
        async with app.http_client.get(url, headers={ROUTED_HEADER: "1"},
                                       timeout=aiohttp.ClientTimeout(total=10)) as response:
            body = await response.read()
            return web.bytes(body, content_type="application/json", status=response.status)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return web.json({"error": f"the SKU's owner at {owner} did not answer ({exc!r}); retry"}, status=503)


def _stock_of(table: Any, codec: Any, sku: str) -> SkuStock | None:
    raw = table.data.get(sku.encode())
    return stock_from_record(codec.decode_as(raw, STOCK)[1]) if raw else None


def _rocksdb_options(settings: Settings) -> dict[str, int]:
    """Bound RocksDB's memory per partition (faust's defaults allow 2 GiB of block cache per partition)."""
    return {"write_buffer_size": settings.rocksdb_write_buffer_mb * 1024 * 1024,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
            "block_cache_compressed_size": 0}
