"""The faust wiring of a worker: the stock table, the movements agent, the expiry timer, the network follower,
and the /ready and /metrics pages. Thin by design: every decision is in streams.pipeline and streams.domain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiohttp
import faust
from faust.types import TP
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from streams import metrics
from streams.api import OPENAPI, ApiError, QueryService, check_sku
from streams.app import create_app
from streams.domain import Network, SkuStock, StockRules
from streams.network_config import parse_network_record
from streams.partitioning import sku_partition
from streams.pipeline import STOCK, Inbound, Pipeline
from streams.records import stock_from_record
from streams.serde import default_codec
from streams.settings import Settings
from streams.topics import TopicRegistry

log = logging.getLogger("stocksync.worker")


class _Producer:
    """The worker's output producer: confluent-kafka (librdkafka), idempotent, acks=all, murmur2. Producing a
    record costs a few microseconds instead of aiokafka's tens, and outputs are most of a batch's work. No compression:
    aiokafka (faust's consumer, which reads the changelog and re-routed movements) lacks lz4 and snappy."""

    def __init__(self, servers: str) -> None:
        self.producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all",
                                  "partitioner": "murmur2_random", "linger.ms": 0,
                                  "queue.buffering.max.messages": 1_000_000})
        self.errors: list[str] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err}")

    async def send_all(self, records: Sequence[tuple[str, bytes, bytes | None, int | None]]) -> None:
        """Produce the records and return once the broker has every one (retrying while it is unreachable)."""
        for topic, key, value, partition in records:
            while True:
                try:
                    if partition is None:
                        self.producer.produce(topic, value, key, on_delivery=self._delivered)
                    else:
                        self.producer.produce(topic, value, key, partition, on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let it drain
                    await asyncio.get_running_loop().run_in_executor(None, self.producer.poll, 0.1)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, self.producer.flush, 10.0):
            log.warning("outputs not yet delivered after 10 s; still trying")
        if self.errors:
            errors, self.errors = self.errors, []
            log.error("%d output records were refused by the broker, e.g. %s", len(errors), errors[0])


class _Outbox:
    """Collects a batch's output records; `deliver` sends them and waits until the broker has them all."""

    def __init__(self, producer: _Producer) -> None:
        self.producer = producer
        self.records: list[tuple[str, bytes, bytes | None, int | None]] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    async def deliver(self) -> None:
        records, self.records = self.records, []
        if records:
            await self.producer.send_all(records)


class _TableStore:
    """The stock table for one batch. Reads are immediate; writes are held until `commit`, which runs before the
    batch's outputs are sent (see _Batcher.flush).

    faust's own table write would send its changelog record through a buffer that `producer.flush()` can
    overtake, so the record is sent here, awaited, and the store is updated without a second changelog record.
    Each read and write runs in the context of an event of the SKU's partition, as faust's stores expect."""

    def __init__(self, producer: _Producer, table: Any, stream: Any, events: Sequence[Any]) -> None:
        self.producer = producer
        self.table = table
        self.stream = stream
        self.by_partition = {event.message.partition: event for event in events}
        self.writes: dict[bytes, tuple[bytes, int]] = {}

    def _enter(self, partition: int) -> None:
        self.stream._set_current_event(self.by_partition[partition])

    def get(self, sku: str, partition: int) -> bytes | None:
        self._enter(partition)
        value: bytes | None = self.table.data.get(sku.encode())
        return value

    def put(self, sku: str, value: bytes, partition: int) -> None:
        self.put_raw(sku.encode(), value, partition)

    def put_raw(self, key: bytes, value: bytes, partition: int) -> None:
        self.writes[key] = (value, partition)

    async def commit(self) -> None:
        changelog = self.table.changelog_topic.get_topic_name()
        await self.producer.send_all([(changelog, key, value, partition)
                                      for key, (value, partition) in self.writes.items()])
        for key, (value, partition) in self.writes.items():
            self._enter(partition)
            self.table.data[key] = value
        self.writes.clear()


OFFSETS = "stocksync.InputOffsets"


def offsets_key(partition: int) -> bytes:
    """The stock-table key of a partition's InputOffsets record (no SKU starts with NUL)."""
    return b"\x00offsets:%d" % partition


class _Batcher:
    """Collects a batch of events and handles it: pipeline, outputs delivered, state committed, events acked.

    It also decides where each input partition must be read from. faust-streaming occasionally delivers a message
    past unread ones (around rebalances and restarts) and its commit logic then counts the skipped range as
    acknowledged, so neither its stream nor its committed offset can be trusted to be gap-free. The batcher
    therefore keeps its own record of where each input partition's movements end (InputOffsets, in the stock
    table's changelog, written with the state of the batch) and only takes offsets in sequence from there, seeking
    back whenever something arrives past the next expected offset."""

    RESEEK_AFTER_S = 1.0

    def __init__(self, app: faust.App, producer: _Producer, table: Any, pipeline: Pipeline, max_batch: int) -> None:
        self.app, self.producer, self.table, self.pipeline, self.max_batch = app, producer, table, pipeline, max_batch
        self.codec = pipeline.codec
        self.events: list[Any] = []
        self.stream: Any = None
        self.first_added = 0.0
        self.lock = asyncio.Lock()
        self.next_offset: dict[Any, int] = {}  # per input partition, the offset expected next
        self.last_seek: dict[Any, float] = {}  # input partitions being read again, and when the seek was made
        self.recorded: dict[int, dict[str, int]] = {}  # per partition number, its InputOffsets as last written
        self.last_event_at = time.monotonic()

    async def add(self, stream: Any, event: Any) -> bool:
        """Take an event; False (and a seek back) when it arrived past the next expected offset."""
        self.stream = stream
        self.last_event_at = time.monotonic()
        if not await self._in_sequence(event):
            return False
        if not self.events:
            self.first_added = time.monotonic()
        self.events.append(event)
        return True

    async def _in_sequence(self, event: Any) -> bool:
        """Input topics have no compaction and no transaction markers, so their offsets have no gaps: accept
        the next expected offset, or an older one (a re-delivery: the domain sees a duplicate)."""
        tp, offset = event.message.tp, event.message.offset
        expected = self.next_offset.get(tp)
        if expected is None:
            expected = self.next_offset[tp] = await self._resume_offset(event)
        if offset < expected:
            return True
        if offset > expected:
            if tp not in self.last_seek:
                log.error("input %s arrived at offset %d, expected %d; reading from %d again", tp, offset, expected,
                          expected)
                metrics.OFFSET_GAPS.inc()
                self._seek(tp, expected)
            return False
        self.last_seek.pop(tp, None)
        self.next_offset[tp] = offset + 1
        return True

    def _seek(self, tp: Any, offset: int) -> None:
        self.last_seek[tp] = time.monotonic()
        self.app.consumer._read_offset[tp] = None
        asyncio.ensure_future(self.app.consumer.seek(tp, offset))

    def resume_starved_partitions(self) -> None:
        """faust stops fetching a partition while the agent's queue is under pressure and resumes it when the
        pressure drops; after a seek or a re-delivery storm that resume can be lost, and the partition is never
        fetched again (seen in CI: every partition of three busy topics stalled for minutes after a restart).
        When nothing has arrived for a second, whatever faust still holds back is not held back by pressure."""
        consumer = self.app.consumer
        if time.monotonic() - self.last_event_at < self.RESEEK_AFTER_S or not consumer._buffered_partitions:
            return
        starved = sorted(consumer._buffered_partitions)
        log.warning("fetching again from %d input partitions faust left paused, e.g. %s", len(starved), starved[0])
        metrics.STARVED_PARTITIONS.inc(len(starved))
        for tp in starved:
            consumer.on_buffer_drop(tp)
        self.last_event_at = time.monotonic()

    def seek_again_where_stalled(self) -> None:
        """Messages fetched before a seek still arrive and move faust's read offset past the seek, and faust then
        drops the re-read messages as old: until the expected offset arrives, seek again every second."""
        now = time.monotonic()
        for tp, at in list(self.last_seek.items()):
            if now - at >= self.RESEEK_AFTER_S:
                log.info("input %s: offset %d not here yet; seeking to it again", tp, self.next_offset[tp])
                self._seek(tp, self.next_offset[tp])

    async def _resume_offset(self, event: Any) -> int:
        """Where a newly assigned input partition resumes: after the last movement in the state, or at the start."""
        tp = event.message.tp
        recorded = self._recorded(event).get(tp.topic)
        if recorded is not None:
            log.info("input %s resumes at %d (recorded); first message %d", tp, recorded, event.message.offset)
            return recorded
        earliest: int = (await self.app.consumer.earliest_offsets(tp)).get(tp, 0)
        log.info("input %s resumes at %d (its start, nothing recorded); first message %d", tp, earliest,
                 event.message.offset)
        return earliest

    def _recorded(self, event: Any) -> dict[str, int]:
        partition = event.message.partition
        if partition not in self.recorded:
            self.stream._set_current_event(event)  # the table's store for this partition
            raw = self.table.data.get(offsets_key(partition))
            self.recorded[partition] = dict(self.codec.decode_as(raw, OFFSETS)[1]["next_offsets"]) if raw else {}
        return self.recorded[partition]

    def _record_offsets(self, events: Sequence[Any], store: _TableStore) -> None:
        """Advance each touched partition's InputOffsets past this batch's messages (written with the state)."""
        ends: dict[int, tuple[Any, dict[str, int]]] = {}  # partition -> (an event of it, topic -> next offset)
        for e in events:
            _, topics = ends.setdefault(e.message.partition, (e, {}))
            topics[e.message.topic] = max(topics.get(e.message.topic, 0), e.message.offset + 1)
        for partition, (event, topics) in ends.items():
            record = self._recorded(event)
            advanced = {t: n for t, n in topics.items() if n > record.get(t, 0)}
            if advanced:
                record.update(advanced)
                store.put_raw(offsets_key(partition), self.codec.encode(
                    OFFSETS, {"partition": partition, "next_offsets": record}), partition)

    def forget_positions(self) -> None:
        """At an assignment: partitions resume from the recorded offsets (read again once recovery is done)."""
        self.next_offset.clear()
        self.last_seek.clear()
        self.recorded.clear()

    def full(self) -> bool:
        return len(self.events) >= self.max_batch

    def due(self, wait_s: float) -> bool:
        """A batch closes once its first message has waited `wait_s`: latency stays bounded under steady load."""
        return bool(self.events) and time.monotonic() - self.first_added >= wait_s

    async def flush(self) -> None:
        async with self.lock:
            events, self.events = self.events, []
            if not events:
                return
            outbox = _Outbox(self.producer)
            store = _TableStore(self.producer, self.table, self.stream, events)
            batch = [Inbound(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                             e.message.value, int(e.message.timestamp * 1000)) for e in events]
            try:
                self.pipeline.handle(batch, store, outbox)
            except Exception as exc:  # noqa: BLE001 - nothing may escape an agent: dead-letter the batch
                log.exception("batch of %d messages failed; dead-lettering it", len(batch))
                outbox.records.clear()
                store.writes.clear()
                self.pipeline.dead_letter_batch(batch, outbox, "internal_error", repr(exc)[:500])
            # State first (with this batch's ledger entries in it), then the outputs, then the acknowledgement:
            # a crash in between leaves a state whose movements come again as duplicates, which re-send the
            # outputs; versions never go back.
            self._record_offsets(events, store)
            await store.commit()
            await outbox.deliver()
            for event in events:
                await self.stream.ack(event)
            done = time.time()
            for message in batch:
                metrics.INGEST_LATENCY.observe(max(0.0, done - message.timestamp_ms / 1000))


def build_worker(settings: Settings, servers: str, network: Network, network_version: int) -> faust.App:
    """The faust app of one worker, for the network in force when it starts (it follows later changes)."""
    app = create_app(settings, servers)
    registry = TopicRegistry(settings)
    codec = default_codec()
    def committed(topic: str, partition: int) -> int | None:
        offset: int | None = app.consumer._committed_offset.get(TP(topic, partition))  # faust's own bookkeeping
        return offset

    pipeline = Pipeline(registry, codec, StockRules(horizon_ms=settings.horizon_ms), committed)
    pipeline.set_network(network, network_version)
    state: dict[str, Any] = {"ready": False, "rebuild_expiries": True}

    inputs = app.topic(*pipeline.input_topics(), key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions, acks=True)
    table = app.Table("stock", key_type=bytes, value_type=bytes, partitions=settings.partitions,
                      options=_rocksdb_options(settings))

    def local_stocks() -> Iterator[SkuStock]:
        for key, value in table.items():
            if key.startswith(b"\x00"):  # the InputOffsets records
                continue
            yield stock_from_record(codec.decode_as(value, STOCK)[1])

    producer = _Producer(servers)
    batcher = _Batcher(app, producer, table, pipeline, settings.max_batch)

    @app.agent(inputs, concurrency=1)
    async def movements(stream: faust.StreamT) -> None:
        # Acks are manual: a message is acknowledged (its offset committable) only after its batch's outputs
        # and state are on the broker. A batch closes when full, or batch_wait_s after its first message.
        async for event in stream.noack().events():
            if not await batcher.add(stream, event):
                # Past a gap: it comes again after the seek. Acknowledged all the same, or faust would wait
                # for it forever at the next rebalance or shutdown.
                await stream.ack(event)
                continue
            if batcher.full():
                await batcher.flush()

    async def close_idle_batches() -> None:
        while True:
            await asyncio.sleep(settings.batch_wait_s)
            try:
                batcher.seek_again_where_stalled()
                batcher.resume_starved_partitions()
                if batcher.due(settings.batch_wait_s):
                    await batcher.flush()
            except Exception:  # noqa: BLE001 - this loop must outlive any one batch
                log.exception("closing a batch failed")

    @app.task
    async def start_idle_flusher() -> None:
        # A plain asyncio task, not a faust timer: faust stops its timers before it waits, at a rebalance or at
        # shutdown, for every message to be acknowledged, and the last batch must still close then.
        state["idle_flusher"] = asyncio.get_running_loop().create_task(close_idle_batches())

    @app.timer(settings.expiry_interval_s)
    async def expire_reservations() -> None:
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            return
        outbox = _Outbox(producer)
        if state["rebuild_expiries"]:
            state["rebuild_expiries"] = False
            pipeline.rebuild_expiries(local_stocks())
            # A held-back ATS update of a coalescing channel is lost if its worker dies: publish those
            # channels' ATS for every SKU this worker now owns.
            pipeline.republish_ats(local_stocks(), pipeline.coalesced_channels(), outbox)
        pipeline.request_expiries(outbox)
        await outbox.deliver()

    @app.timer(0.25)
    async def release_coalesced_ats() -> None:
        outbox = _Outbox(producer)
        if pipeline.release_held_ats(outbox):
            await outbox.deliver()

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: Any, **kwargs: Any) -> None:
        # Held-back ATS updates go out before another worker takes the SKUs over (it publishes newer ones).
        outbox = _Outbox(producer)
        pipeline.release_held_ats(outbox, everything=True)
        await outbox.deliver()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        state["rebuild_expiries"] = True
        batcher.forget_positions()  # partitions may restart from their committed offsets

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
                        outbox = _Outbox(producer)
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
        inputs = set(pipeline.input_topics())
        assigned = sorted({tp.topic for tp in app.consumer.assignment() if tp.topic in inputs})
        return web.json({"ready": ok, "network_version": pipeline.network_version, "assigned_inputs": assigned},
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
