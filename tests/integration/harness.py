"""A stocksync deployment on the session broker: unique topics, real worker processes, and readers of every output."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from streams.control.admin import ensure_topics
from streams.control.network import publish_network
from streams.domain import Movement, Network, SkuStock, Status, channel_ats
from streams.domain.movements import EXPIRY_EVENT_PREFIX, expiry_of
from streams.domain.orders import HOLD_STEPS, ORDER_EVENT_PREFIX, hold_movement
from streams.kafka.clients import new_admin, new_consumer, new_producer, reached, watermarks
from streams.kafka.topics import TopicRegistry
from streams.security import PLAINTEXT, KafkaConnection, KafkaSecurity
from streams.settings import load_settings
from streams.wire.codec import default_codec
from streams.wire.order_records import sourced_line
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.conftest import free_port, repo_root, wait_for


@dataclass
class WorkerProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    ca_file: Path | None = None  # set when the worker's API speaks HTTPS (trusting this CA)

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def _ready_page(self) -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        with urllib.request.urlopen(f"{self.url}/ready", timeout=1, context=context) as response:
            return dict(json.loads(response.read()))

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}: "
                                 f"{self.log.read_text()[-3000:]}")
        try:
            return bool(self._ready_page()["ready"])
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        try:
            return self._ready_page()
        except OSError:
            return {}

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@dataclass
class Deployment:
    bootstrap: str
    unique: str
    tmp: Path
    partitions: int = 4
    store: str = "memory://"
    replication_factor: int = 1
    security: KafkaSecurity = PLAINTEXT  # how the harness connects (topics, the network, the checks)
    worker_security: KafkaSecurity | None = None  # how its workers connect (default: as the harness)
    workers: list[WorkerProcess] = field(default_factory=list)
    sent: dict[str, Movement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = load_settings(bootstrap_servers=self.bootstrap, topic_prefix=f"t-{self.unique}",
                                      app_id=f"stocksync-{self.unique}", partitions=self.partitions)
        self.registry = TopicRegistry(self.settings)
        self.codec = default_codec()
        self.kafka = KafkaConnection(self.bootstrap, self.security)
        self.admin = new_admin(self.kafka)
        self.producer = new_producer(self.kafka, **{"linger.ms": 5})

    # --- configuration and workers ---------------------------------------------------------------------------
    def apply_network(self, data: dict[str, Any]) -> int:
        self.network = Network.from_dict(data)
        ensure_topics(self.admin, self.registry.all(self.network.channels), self.replication_factor)
        return publish_network(self.kafka, self.registry, self.network)

    def env(self, port: int, name: str) -> dict[str, str]:
        return {**os.environ, **(self.worker_security or self.security).environment(),
                "STOCKSYNC_BOOTSTRAP_SERVERS": self.bootstrap,
                "STOCKSYNC_TOPIC_PREFIX": self.settings.topic_prefix, "STOCKSYNC_APP_ID": self.settings.app_id,
                "STOCKSYNC_PARTITIONS": str(self.partitions), "STOCKSYNC_STORE": self.store,
                "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": "6", "STOCKSYNC_WEB_PORT": str(port),
                "STOCKSYNC_DATA_DIR": str(self.data_dir(name)), "STOCKSYNC_EXPIRY_INTERVAL_S": "0.5",
                "STOCKSYNC_LOG_LEVEL": "info", "STOCKSYNC_REPLICATION_FACTOR": str(self.replication_factor)}

    def data_dir(self, name: str) -> Path:
        """The worker `name`'s disk: its local state store."""
        return self.tmp / f"data-{name}"

    def start_worker(self, name: str, wait: bool = True, env: dict[str, str] | None = None,
                     args: Sequence[str] = (), port: int | None = None) -> WorkerProcess:
        """A worker process on this deployment's topics; `env` adds or overrides STOCKSYNC_ settings, `args` are
        the worker command's."""
        port = port or free_port()
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", *args],
                                    env={**self.env(port, name), **(env or {})},
                                    cwd=repo_root(), stdout=out, stderr=subprocess.STDOUT)
        settings = {**self.env(port, name), **(env or {})}
        ca = settings.get("STOCKSYNC_WEB_CA_FILE") if settings.get("STOCKSYNC_WEB_TLS_CERT_FILE") else None
        worker = WorkerProcess(name, port, proc, log, Path(ca) if ca else None)
        self.workers.append(worker)
        if wait:
            wait_for(worker.ready, 120, f"worker {name} ready")
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.producer.flush(10)
        del self.producer  # its threads stop now, not after the session broker is gone

    # --- input -----------------------------------------------------------------------------------------------
    def topic_for(self, m: Movement) -> str:
        from streams.domain.movements import SALES_SIDE

        return (self.registry.sales if m.kind in SALES_SIDE else self.registry.restock)(m.channel).name

    def send(self, movements: Iterable[Movement], pack: int = 1, record: bool = True) -> None:
        """Produce movements; with pack > 1, movements of one channel topic and partition share a message."""
        groups: dict[tuple[str, int], list[Movement]] = defaultdict(list)
        for m in movements:
            if record:
                self.sent.setdefault(m.key, m)
            group = groups[(self.topic_for(m), sku_partition(m.sku, self.partitions))]
            group.append(m)
            if len(group) >= pack:
                self._produce(self.topic_for(m), group)
                group.clear()
        for (topic, _), group in groups.items():
            if group:
                self._produce(topic, group)
        assert self.producer.flush(60) == 0

    def _produce(self, topic: str, group: list[Movement]) -> None:
        if len(group) == 1:
            value = self.codec.encode(Schema.MOVEMENT, movement_to_record(group[0]))
        else:
            value = self.codec.encode(Schema.MOVEMENT_BATCH,
                                      {"movements": [movement_to_record(m) for m in group]})
        self.producer.produce(topic, key=group[0].sku.encode(), value=value)
        self.producer.poll(0)

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.producer.produce(topic, key=key, value=value)
        assert self.producer.flush(30) == 0

    def send_applied(self, movements: list[Movement], timeout_s: float = 60) -> None:
        """Send and wait until every movement is in the ledger: topics are read in no fixed order, so stock a
        later request relies on must be applied first."""
        self.send(movements)
        wanted = {(m.channel, m.event_id) for m in movements}

        def ledgered() -> bool:
            return wanted <= {(v["channel"], v["event_id"]) for _, v, _, _ in self.read(self.registry.ledger.name)}

        wait_for(ledgered, timeout_s, f"{len(wanted)} movements in the ledger", interval_s=0.5)

    # An open reservation expiring sooner than this could expire while a test compares outputs with a replay.
    EXPIRY_MARGIN_MS = 60_000

    def settle(self, timeout_s: float = 240, all_reservations_closed: bool = False) -> None:
        """Wait until every input is consumed and committed, and no open reservation expires within the next
        minute (or, with `all_reservations_closed`, none is open at all): nothing changes while a test compares."""
        last = {"why": "not checked yet"}

        def settled() -> bool:
            lag = self.input_lag()
            if lag:
                last["why"] = f"input lag {lag}"
                return False
            stocks, _ = self.replay_ledger()
            now = int(time.time() * 1000)
            due = [(s.sku, r.key, r.expires_at) for s in stocks.values() for r in s.open_reservations()
                   if all_reservations_closed or r.expires_at <= now + self.EXPIRY_MARGIN_MS]
            last["why"] = f"{len(due)} reservations held that expire soon, e.g. {due[:3]} (now {now})"
            return not due

        try:
            wait_for(settled, timeout_s, "the pipeline to settle", interval_s=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last['why']}") from None

    # --- output ----------------------------------------------------------------------------------------------
    def read(self, topic: str) -> list[tuple[bytes | None, dict[str, Any], int, int]]:
        """Every record of a topic, from the start to its current end: (key, value, partition, offset)."""
        return [(key, self.codec.decode(value)[1], partition, offset)
                for key, value, partition, offset in self.messages(topic)]

    def read_raw(self, topic: str) -> list[bytes]:
        """Every value of a topic as written, from the start to its current end."""
        return [value for _, value, _, _ in self.messages(topic)]

    def messages(self, topic: str) -> list[tuple[bytes | None, bytes, int, int]]:
        """Every message of a topic, from the start to its current end: (key, value, partition, offset). Tombstones
        (a deleted key of a compacted topic) are left out."""
        return [(key, value, partition, offset) for key, value, partition, offset in self.all_messages(topic)
                if value is not None]

    def all_messages(self, topic: str) -> list[tuple[bytes | None, bytes | None, int, int]]:
        """Every message of a topic, tombstones (value None) included."""
        consumer = new_consumer(self.kafka, f"reader-{time.monotonic_ns()}")
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            bounds = {p: watermarks(consumer, TopicPartition(topic, p)) for p in parts}
            consumer.assign([TopicPartition(topic, p, bounds[p][0]) for p in parts])
            ends = {p: high for p, (_, high) in bounds.items()}
            out = []
            deadline = time.monotonic() + 120
            while not reached(consumer, topic, ends):
                assert time.monotonic() < deadline, f"could not read {topic} to its end"
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                value, partition, offset = msg.value(), msg.partition(), msg.offset()
                assert partition is not None and offset is not None, f"{topic}: {msg}"
                out.append((msg.key(), value, partition, offset))
            return out
        finally:
            consumer.close()

    def versions_going_back(self, topic: str, version: str = "version") -> list[str]:
        """Keys of `topic` whose records' `version` field goes back somewhere in offset order."""
        last: dict[bytes, int] = {}
        back = []
        for key, value, _, _ in self.read(topic):
            assert key is not None
            if value[version] < last.get(key, -1):
                back.append(f"{key!r}: {last[key]} -> {value[version]}")
            last[key] = value[version]
        return back

    def latest(self, topic: str) -> dict[bytes, dict[str, Any]]:
        """What a compacted topic holds per key (a tombstone deletes its key)."""
        latest: dict[bytes, dict[str, Any]] = {}
        for key, value, _, _ in self.all_messages(topic):
            assert key is not None
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = self.codec.decode(value)[1]
        return latest

    def input_lag(self) -> dict[str, int]:
        """Per input topic partition, how far the workers' group has yet to commit ({} when all consumed). A broker
        fault meanwhile (a leader or the group's coordinator moving) means asking again, not failing the run."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return self._input_lag()
            except KafkaException as exc:
                if time.monotonic() > deadline or exc.args[0].fatal():
                    raise
                time.sleep(0.5)

    def _input_lag(self) -> dict[str, int]:
        topics = [spec.name for ch in self.network.channels for spec in
                  (self.registry.sales(ch), self.registry.restock(ch))] + [self.registry.order_steps.name]
        consumer = new_consumer(self.kafka, self.settings.input_group)
        try:
            tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
            committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
            lag = {}
            for tp in tps:
                high = watermarks(consumer, tp)[1]
                if high > 0 and committed[(tp.topic, tp.partition)] < high:
                    lag[f"{tp.topic.rsplit('.', 2)[-2]}.{tp.topic.rsplit('.', 1)[-1]}/{tp.partition}"] = \
                        high - max(0, committed[(tp.topic, tp.partition)])
            return lag
        finally:
            consumer.close()

    # --- the expected state: the domain replaying the ledger's history --------------------------------------
    def replay_ledger(self) -> tuple[dict[str, SkuStock], list[dict[str, Any]]]:
        """Replay each SKU's ledger through the domain; every replayed outcome must match the ledgered one.

        The ledger is exactly-once (each batch's entries are committed with the state that applied them): an
        event with two entries fails here. Entries are ordered per SKU by version, the change that made a version
        first."""
        read = self.read(self.registry.ledger.name)
        entries = [value for _, value, _, _ in read]
        first: dict[str, int] = {}
        doubled = []
        for index, entry in enumerate(entries):
            key = f"{entry['channel']}:{entry['event_id']}"
            if key in first:
                doubled.append(key)
            first.setdefault(key, index)
        if doubled:  # what a diagnosis needs: where each copy is, and which input message made it
            where = [(f"{e['channel']}:{e['event_id']}", e["sku"], e["kind"], e["status"], e["version"],
                      f"ledger {partition}@{offset}", f"from {e['source_topic']}[{e['source_partition']}]"
                      f"@{e['source_offset']}", e["applied_at"])
                     for _, e, partition, offset in read if f"{e['channel']}:{e['event_id']}" in doubled[:3]]
            raise AssertionError(f"{len(doubled)} ledger entries written twice, e.g. {doubled[:5]}: {where}")
        history = sorted((entries[i] for i in first.values()),
                         key=lambda e: (e["version"], not e["changes"], first[f"{e['channel']}:{e['event_id']}"]))
        stocks: dict[str, SkuStock] = {}
        steps = self.order_step_movements() if any(
            e["event_id"].startswith(ORDER_EVENT_PREFIX) for e in entries) else {}
        for entry in history:
            key = f"{entry['channel']}:{entry['event_id']}"
            movement = self.sent.get(key) or steps.get(key)
            if movement is None:
                assert entry["kind"] == "reservation_expired", f"ledger has an event nobody sent: {key}"
                reservation = entry["event_id"].removeprefix(f"{EXPIRY_EVENT_PREFIX}{entry['channel']}:")
                movement = expiry_of(entry["channel"], entry["sku"], reservation, entry["occurred_at"])
            stock = stocks.setdefault(movement.sku, SkuStock(movement.sku))
            outcome = stock.apply(movement, self.network, entry["applied_at"])
            if outcome.status != Status(entry["status"]) or outcome.version != entry["version"]:
                trail = [(i, e["channel"], e["event_id"], e["status"], e["version"], e["source_partition"],
                          e["source_offset"]) for i, e in enumerate(entries) if e["sku"] == movement.sku]
                raise AssertionError(f"replay of {key} gave {outcome.status} v{outcome.version}, the ledger says "
                                     f"{entry['status']} v{entry['version']}; ledger of {movement.sku}: {trail}")
        return stocks, history

    def order_step_movements(self) -> dict[str, Movement]:
        """The movements orders' coordinators asked the SKUs' owners to apply (holds placed, confirmed and
        released), by movement key, as the order-steps topic carries them."""
        found: dict[str, Movement] = {}
        read = [record for _, record, _, _ in self.read(self.registry.order_steps.name)]
        for step in [step for record in read for step in record.get("steps", [record])]:
            kind = HOLD_STEPS.get(step["kind"])
            if kind is not None:
                parts = tuple((p["location"], p["quantity"]) for p in step["parts"])
                movement = hold_movement(kind, step["channel"], step["sku"], step["hold_id"], parts,
                                         step["expires_at"], step["sent_at"], sourced_line(step))
                found.setdefault(movement.key, movement)
        return found

    def assert_outputs_match(self, stocks: dict[str, SkuStock]) -> None:
        positions = self.latest(self.registry.positions.name)
        expected_positions = {f"{sku}|{loc}".encode(): stock.position(loc)
                              for sku, stock in stocks.items() for loc in stock.positions}
        assert set(positions) == set(expected_positions)
        for key, position in expected_positions.items():
            got = positions[key]
            figures = got["figures"]
            assert (figures["on_hand"], figures["reserved"], figures["in_transit"], figures["quality_control"],
                    figures["damaged"], figures["quarantine"], got["version"]) == (
                position.on_hand, position.reserved, position.in_transit, position.quality_control,
                position.damaged, position.quarantine, position.version), key
        problem: dict[str, str | None] = {"feed": None}

        def feeds_match() -> bool:
            problem["feed"] = self._feed_mismatch(stocks)
            return problem["feed"] is None

        try:  # a coalescing channel's last update may still be held back for up to its window
            wait_for(feeds_match, 10, "every channel's feed to equal the replay", interval_s=0.5)
        except AssertionError:
            raise AssertionError(problem["feed"]) from None

    def _feed_mismatch(self, stocks: dict[str, SkuStock]) -> str | None:
        for channel in self.network.channels.values():
            records = self.read(self.registry.ats(channel.id).name)
            feed = {key.decode(): value for key, value, _, _ in records if key is not None}
            for sku, stock in stocks.items():
                expected = channel_ats(stock, channel)
                if feed.get(sku, {"ats": 0})["ats"] != expected:
                    history = [(o, v["ats"], v["version"], v["updated_at"]) for k, v, _, o in records
                               if k == sku.encode()]
                    ledger = [(o, v["event_id"], v["status"], v["version"], v["applied_at"],
                               [(c["location"], c["after"]["available"]) for c in v["changes"]])
                              for _, v, _, o in self.read(self.registry.ledger.name) if v["sku"] == sku]
                    return (f"{channel.id} feed of {sku}: {feed.get(sku)}, expected {expected}; "
                            f"feed history {history}; ledger {ledger}")
        return None
