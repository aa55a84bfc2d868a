"""stocksync side by side with the plain confluent-kafka loop, on one broker, one workload, in one run. Prints JSON.

The workload: `--movements` movements over `--skus` SKUs with Zipf(`--zipf`) popularity and `--locations`
locations, the mix a retailer sees (mostly sales; receipts; reservations and their closing; returns; counts;
adjustments), pre-produced to the input topics twice: packed as the SDK packs them (up to `--pack` movements of
one partition per message) and one movement per message (any Kafka client). Then:

- **plain loop**: one confluent-kafka consumer/producer process decodes each message (Avro), keeps on_hand per
  SKU and location in a dict, and produces one Avro change event per movement (at-least-once, no state store):
  the floor any stream processor pays for reading, decoding and writing.
- **equal volume** (the fair yardstick): what the stocksync worker wrote per movement is read back (records and
  bytes, by topic), and Kafka Streams (exactly-once v2) and a plain transactional confluent-kafka loop (no rules,
  no encoding: decode, write padded records, a transaction every 100 ms) are made to write as much on the same
  backlog; stocksync's ratio to each, packed and single.
- **stocksync**: one worker (RocksDB, exactly-once transactions, every output: positions, ledger, ATS feeds,
  replies) started on the backlog; movements/s is timed from its first batch until its input group has read
  everything. Then end-to-end latency at fixed offered rates (a receipt of a new SKU reported through the channel
  client -> the channel's ATS feed update consumed; alone, and as one in ten movements offered among the
  workload's mix), peak RSS, and recovery: SIGKILL and restart on its disk, then on an empty disk (the state from
  the changelog alone), each timed to /ready; then failover: a second worker keeps standby replicas, the first is
  killed, and the seconds until a movement of every partition is on a feed again. Then the same backlog, produced
  afresh, read by `stocksync worker --processes 2` (one parent, two worker processes): its movements/s and its
  ratio to the one process's.

Uses STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS, else starts a local broker. The machine is shared by broker, worker and
load: compare figures from one run only.

    python -m bench.compare [--movements 200000] [--skus 10000] [--zipf 1.0] [--rates 200,2000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from streams.channel import ChannelClient
from streams.control.admin import await_inputs_read, ensure_topics
from streams.control.network import publish_network
from streams.dev.cluster import start_cluster
from streams.dev.local_kafka import maven_dependencies
from streams.domain import Kind, Movement, Network
from streams.domain.movements import ADJUSTMENT_REASONS, SALES_SIDE
from streams.kafka.clients import (
    end_offsets,
    new_admin,
    new_consumer,
    new_producer,
    new_transactional_producer,
    reached,
    start_positions,
)
from streams.kafka.topics import TopicRegistry
from streams.security import KafkaConnection
from streams.settings import Settings, load_settings
from streams.wire.codec import SingleObjectCodec, default_codec
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema, schemas_dir
from streams.worker.flow.transactions import PartitionTransactions

PARTITIONS = 6
KSTREAMS = Path(__file__).resolve().parent / "kstreams"
KSTREAMS_VERSION = "4.1.1"  # the local broker's Kafka release
SESSION_TIMEOUT_S = "6"  # the workers' (Kafka's least by default): a killed worker is noticed after this
SELLERS = ("web", "app", "market")


def network(locations: int) -> dict[str, Any]:
    """`locations` locations (a fifth of them warehouses) spread over Germany; web and app sell from all, the
    marketplace from the warehouses, the WMS reports for all."""
    rng = random.Random(11)
    places = [{"id": f"{'wh' if i % 5 == 0 else 'st'}-{i:03d}", "kind": "warehouse" if i % 5 == 0 else "store",
               "latitude": round(rng.uniform(47.5, 54.5), 3), "longitude": round(rng.uniform(6.5, 14.5), 3),
               "ship_from": True, "pickup": i % 5 != 0} for i in range(locations)]
    everywhere = [p["id"] for p in places]
    warehouses = [p["id"] for p in places if p["kind"] == "warehouse"]
    return {"locations": places, "channels": [
        {"id": "web", "locations": everywhere, "buffer": 2}, {"id": "app", "locations": everywhere, "buffer": 1},
        {"id": "market", "locations": warehouses, "buffer": 3}, {"id": "wms", "locations": everywhere}]}


def workload(size: int, skus: int, zipf: float, net: dict[str, Any], seed: int) -> list[Movement]:
    """`size` movements in arrival order; event times end now. Reservations are closed later in the stream."""
    rng = random.Random(seed)
    cumulative, total = [], 0.0
    for rank in range(1, skus + 1):
        total += 1.0 / rank ** zipf
        cumulative.append(total)
    sku_ids = [f"SKU-{i:06d}" for i in range(skus)]
    rng.shuffle(sku_ids)  # the hottest SKUs land on any partition
    owned = {c["id"]: c["locations"] for c in net["channels"]}
    start = int(time.time() * 1000) - size
    open_holds: list[tuple[str, str, str]] = []  # (channel, sku, reservation id)
    out: list[Movement] = []
    for i in range(size):
        sku = sku_ids[bisect.bisect_left(cumulative, rng.random() * total)]
        at, r = start + i, rng.random()
        event = f"e{i}"
        if r < 0.60:
            channel = rng.choice(SELLERS)
            out.append(Movement(Kind.SALE, event, channel, sku, rng.choice(owned[channel]), rng.randint(1, 2), at))
        elif r < 0.72:
            out.append(Movement(Kind.RECEIPT, event, "wms", sku, rng.choice(owned["wms"]), rng.randint(10, 60), at))
        elif r < 0.80:
            channel = rng.choice(("web", "app"))
            out.append(Movement(Kind.RESERVATION_PLACED, event, channel, sku, None, 1, at, reservation_id=event,
                                expires_at=at + 3_600_000))
            open_holds.append((channel, sku, event))
        elif r < 0.86 and open_holds:
            channel, held_sku, reservation = open_holds.pop(rng.randrange(len(open_holds)))
            kind = Kind.RESERVATION_FULFILLED if rng.random() < 0.7 else Kind.RESERVATION_RELEASED
            out.append(Movement(kind, event, channel, held_sku, None, 1, at, reservation_id=reservation))
        elif r < 0.90:
            out.append(Movement(Kind.RETURN, event, "web", sku, rng.choice(owned["web"]), 1, at))
        elif r < 0.93:
            out.append(Movement(Kind.COUNT, event, "wms", sku, rng.choice(owned["wms"]), rng.randint(0, 80), at))
        else:
            out.append(Movement(Kind.ADJUSTMENT, event, "wms", sku, rng.choice(owned["wms"]),
                                rng.choice((-2, -1, 1, 2)), at, reason=rng.choice(sorted(ADJUSTMENT_REASONS))))
    return out


class Deployment:
    """One stocksync deployment (its own topic prefix and app id) with the workload pre-produced to its inputs."""

    def __init__(self, servers: str, name: str, net: dict[str, Any], tmp: Path) -> None:
        self.servers, self.tmp = servers, tmp
        self.settings = load_settings(bootstrap_servers=servers, topic_prefix=name, app_id=f"{name}-app",
                                      partitions=PARTITIONS)
        self.registry = TopicRegistry(self.settings)
        self.network = Network.from_dict(net)
        ensure_topics(new_admin(servers), self.registry.all(self.network.channels))
        publish_network(servers, self.registry, self.network)
        self.warm_transactions()

    def warm_transactions(self) -> None:
        """Initialise the worker's transactional ids once before anything is timed: on a new cluster the first
        use creates the transaction log (50 partitions), and its coordinators answer "not coordinator" for
        seconds while they load, which a long-running cluster never does."""
        ids = [PartitionTransactions(self.servers, self.settings.app_id).transactional_id(p)
               for p in range(PARTITIONS)]
        for transactional_id in ids:
            producer = new_transactional_producer(self.servers, transactional_id)
            producer.init_transactions(120)
            producer.begin_transaction()
            producer.commit_transaction(60)

    def topic_for(self, m: Movement) -> str:
        return (self.registry.sales if m.kind in SALES_SIDE else self.registry.restock)(m.channel).name

    def produce(self, movements: list[Movement], pack: int) -> int:
        """The movements on their channel topics, `pack` per message at most (one partition's, in order);
        returns the messages sent."""
        codec = default_codec()
        producer = new_producer(self.servers, **{"linger.ms": 20, "batch.size": 1_000_000})
        pending: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        messages = 0

        def send(key: tuple[str, int], records: list[dict[str, Any]]) -> None:
            value = codec.encode(Schema.MOVEMENT, records[0]) if len(records) == 1 else \
                codec.encode(Schema.MOVEMENT_BATCH, {"movements": records})
            while True:
                try:
                    producer.produce(key[0], value, records[0]["sku"].encode(), key[1])
                    break
                except BufferError:
                    producer.poll(0.1)

        for m in movements:
            key = (self.topic_for(m), sku_partition(m.sku, PARTITIONS))
            pending[key].append(movement_to_record(m))
            if len(pending[key]) >= pack:
                send(key, pending.pop(key))
                messages += 1
        for key, records in pending.items():
            send(key, records)
            messages += 1
        assert producer.flush(120) == 0, "the workload was not all produced"
        return messages

    def input_ends(self) -> dict[tuple[str, int], int]:
        return end_offsets(self.servers, self.network_inputs())

    def network_inputs(self) -> list[str]:
        return [spec.name for c in sorted(self.network.channels) for spec in (self.registry.sales(c),
                                                                              self.registry.restock(c))]


class WorkerRun:
    """A stocksync worker process of a deployment (RocksDB), on a disk of its own."""

    def __init__(self, deployment: Deployment, data: Path, processes: int = 1) -> None:
        self.deployment, self.data, self.processes = deployment, data, processes
        self.port = 17000 + (os.getpid() + len(str(data))) % 1000 * 4  # room for the processes' own ports
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; returns the seconds until /ready says ready."""
        s = self.deployment.settings
        env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": s.bootstrap_servers, "STOCKSYNC_TOPIC_PREFIX":
               s.topic_prefix, "STOCKSYNC_APP_ID": s.app_id, "STOCKSYNC_PARTITIONS": str(PARTITIONS),
               "STOCKSYNC_STORE": "rocksdb://", "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": SESSION_TIMEOUT_S,
               "STOCKSYNC_WEB_PORT": str(self.port), "STOCKSYNC_DATA_DIR": str(self.data),
               "STOCKSYNC_LOG_LEVEL": "warn"}
        began = time.monotonic()
        log = open(self.data.parent / f"{self.data.name}.log", "ab")  # noqa: SIM115 - the worker's, until it ends
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--processes",
                                      str(self.processes)], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = began + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the worker exited with {self.proc.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1) as response:
                    if json.loads(response.read())["ready"]:
                        return time.monotonic() - began
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("the worker was not ready within 600 s")

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        return peak_rss_mb(self.proc.pid)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples (those with `labels`) on the worker's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == name and labels.items() <= sample.labels.items())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(120)


def throughput(deployment: Deployment, movements: int, data: Path, profile: Path | None = None, processes: int = 1
               ) -> tuple[WorkerRun, dict[str, Any]]:
    """A worker on the pre-produced backlog: movements/s from the start of its first batch until its input group
    has read it all. With `profile`, py-spy samples the worker meanwhile (collapsed stacks in that file, the top
    functions by own time in the result).

    Not timed from /ready: a worker on a backlog starts its first batch as it becomes ready, and a large first
    batch holds its event loop (and so /ready's answer) until it is done. The first batch's start is the
    earliest `applied_at` in the ledger; the worker's CPU time is sampled from /proc throughout, so its CPU
    per movement is counted from the same moment."""
    worker = WorkerRun(deployment, data, processes)
    with CpuSampler(lambda: worker.proc.pid if worker.proc is not None else None) as cpu:
        ready_s = worker.start()
        spy = None
        if profile is not None:
            assert worker.proc is not None
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                                    str(worker.proc.pid), "-r", "200", "-f", "raw", "-o", str(profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await_inputs_read(KafkaConnection(deployment.servers), deployment.settings.input_group,
                          deployment.input_ends(), timeout_s=3600)
        done = time.time()
    began = first_applied_at(deployment) / 1000
    seconds = done - began
    result: dict[str, Any] = {"movements": movements, "seconds": round(seconds, 2),
                              "movements_per_s": round(movements / seconds),
                              "worker_cpu_us_per_movement": round(cpu.since(began) * 1e6 / movements, 1),
                              "ready_after_s": round(ready_s, 2), "peak_rss_mb": worker.peak_rss_mb()}
    if spy is not None and profile is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
        result["profile_own_time"] = own_time(profile)
    return worker, result


def first_applied_at(deployment: Deployment) -> int:
    """When the worker's first batch began: the earliest `applied_at` among the first ledger record of each
    partition (every batch's entries carry the time it began)."""
    codec, ledger = default_codec(), deployment.registry.ledger.name
    consumer = new_consumer(deployment.servers, f"bench-{uuid.uuid4()}")
    try:
        positions, ends = start_positions(consumer, ledger, from_beginning=True)
        consumer.assign([tp for tp in positions if ends[tp.partition] > 0])
        firsts: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(firsts) < sum(1 for end in ends.values() if end > 0) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.partition() in firsts:
                continue
            firsts[int(message.partition() or 0)] = int(codec.decode_as(message.value() or b"",
                                                                        Schema.LEDGER_ENTRY)[1]["applied_at"])
        if not firsts:
            raise SystemExit("the worker wrote no ledger entry")
        return min(firsts.values())
    finally:
        consumer.close()


def own_time(collapsed: Path, top: int = 15) -> dict[str, float]:
    """The share of samples each function was running itself in (the last frame of each stack), the top ones."""
    own: dict[str, int] = defaultdict(int)
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = stack.rsplit(";", 1)[-1]
        own[frame] += int(count)
        total += int(count)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {frame: round(100 * n / total, 1) for frame, n in ranked} if total else {}


def kafka_streams(deployment: Deployment, movements: int, tmp: Path, cache: Path, guarantee: str,
                  volume: Volume | None = None) -> dict[str, Any]:
    """The Kafka Streams peer (bench/kstreams/MovementsJob.java: a RocksDB store of on_hand per SKU and location
    with its changelog, one Avro change event per movement, one stream thread, `guarantee`) on the same backlog,
    timed from its first record until its group has committed every input offset; its CPU sampled from /proc.
    With `volume`, it writes that many records and bytes per movement (padded records besides its own two), and
    what it wrote is read back and reported."""
    libs = maven_dependencies(KSTREAMS / "pom.xml", cache / f"kstreams-{KSTREAMS_VERSION}" / "libs",
                              {"kafka.version": KSTREAMS_VERSION}, f"Kafka Streams {KSTREAMS_VERSION}")
    name = guarantee + ("-equal-volume" if volume else "")
    app_id = f"{deployment.settings.topic_prefix}-kstreams-{name}"
    out_topic = f"{deployment.settings.topic_prefix}.kstreams-out-{name}"
    admin = new_admin(deployment.servers)  # held until its futures are done
    for future in admin.create_topics([NewTopic(out_topic, PARTITIONS, 1)]).values():
        future.result()
    log = open(tmp / f"{app_id}.log", "wb")  # noqa: SIM115 - the job's, until it ends
    extra = [] if volume is None else [str(volume.records - KSTREAMS_OWN_RECORDS), str(volume.padding(
        KSTREAMS_OWN_RECORDS, KSTREAMS_OWN_BYTES, KSTREAMS_KEY_BYTES))]
    job = subprocess.Popen(["java", "-cp", f"{libs}/*", str(KSTREAMS / "MovementsJob.java"), deployment.servers,
                            app_id, str(tmp / app_id), guarantee, out_topic, str(schemas_dir()),
                            ",".join(deployment.network_inputs()), *extra], stdout=subprocess.PIPE, stderr=log)
    log.close()
    first: list[float] = []
    assert job.stdout is not None
    lines = job.stdout
    reading = threading.Thread(target=lambda: first.extend(
        int(line.split()[1]) / 1000 for line in iter(lines.readline, b"") if line.startswith(b"first ")),
        daemon=True)
    reading.start()
    try:
        with CpuSampler(lambda: job.pid) as cpu:
            await_inputs_read(KafkaConnection(deployment.servers), app_id, deployment.input_ends(), timeout_s=3600)
            done = time.time()
        peak = peak_rss_mb(job.pid)
    finally:
        job.terminate()
        job.wait(60)
    if not first:
        raise SystemExit(f"Kafka Streams processed nothing: see {tmp / f'{app_id}.log'}")
    seconds = done - first[0]
    result = {"guarantee": guarantee, "movements": movements, "seconds": round(seconds, 2),
              "movements_per_s": round(movements / seconds),
              "cpu_us_per_movement": round(cpu.since(first[0]) * 1e6 / movements, 1), "peak_rss_mb": peak}
    if volume is not None:
        result["wrote_per_movement"] = written(deployment.servers, [out_topic, f"{app_id}-on-hand-changelog"],
                                               movements).summary()
    return result


KSTREAMS_OWN_RECORDS, KSTREAMS_OWN_BYTES = 2, 82  # its store's changelog record and its change event
KSTREAMS_KEY_BYTES = 16  # "<sku>|<location>"


@dataclasses.dataclass
class Volume:
    """What a job wrote per movement: records and bytes (keys and values), in all and by topic."""

    records: float
    bytes: float
    by_topic: dict[str, float] = dataclasses.field(default_factory=dict)

    def padding(self, own_records: float, own_bytes: float, key_bytes: int) -> int:
        """The value bytes of each record a job writing `own_records` and `own_bytes` per movement adds to reach
        this volume, its keys being `key_bytes` long."""
        extra = self.records - own_records
        return max(0, round((self.bytes - own_bytes) / extra) - key_bytes) if extra > 0 else 0

    def summary(self) -> dict[str, Any]:
        return {"records": round(self.records, 2), "bytes": round(self.bytes), "records_by_topic": {
            topic: round(n, 3) for topic, n in sorted(self.by_topic.items(), key=lambda kv: -kv[1])}}


def written(servers: str, topics: list[str], movements: int) -> Volume:
    """Read back every committed record of `topics`: records and bytes per movement."""
    consumer = new_consumer(servers, f"bench-count-{uuid.uuid4()}")
    counts: dict[str, int] = {}
    size = 0
    try:
        for topic in topics:
            positions, ends = start_positions(consumer, topic, from_beginning=True)
            consumer.assign([tp for tp in positions if ends[tp.partition] > 0])
            counts[topic] = 0
            while not reached(consumer, topic, ends):
                for message in consumer.consume(10_000, 1.0):
                    if message.error() is None:
                        counts[topic] += 1
                        size += len(message.key() or b"") + len(message.value() or b"")
            consumer.unassign()
    finally:
        consumer.close()
    short = {topic.rsplit(".", 1)[-1] if "." in topic else topic: n / movements for topic, n in counts.items()}
    return Volume(sum(counts.values()) / movements, size / movements, short)


def stocksync_outputs(deployment: Deployment) -> list[str]:
    """Every topic a stocksync worker writes (its inputs and reference topics left out)."""
    registry, channels = deployment.registry, sorted(deployment.network.channels)
    inputs = {spec.name for c in channels for spec in (registry.sales(c), registry.restock(c))}
    reference = {registry.network.name, registry.catalog.name}
    return [spec.name for spec in registry.all(channels) if spec.name not in inputs | reference]


def equal_volume(deployment: Deployment, movements: int, stocksync: dict[str, Any], tmp: Path, cache: Path,
                 with_kstreams: bool) -> dict[str, Any]:
    """The fair yardstick: what the stocksync worker wrote per movement (read back), and Kafka Streams
    (exactly-once v2) and a plain transactional loop made to write as much on the same backlog; stocksync's
    ratio to each."""
    volume = written(deployment.servers, stocksync_outputs(deployment), movements)
    found: dict[str, Any] = {"stocksync_wrote_per_movement": volume.summary()}
    if with_kstreams:
        found["kafka_streams"] = kafka_streams(deployment, movements, tmp, cache, "exactly_once_v2", volume)
    found["plain_transactional_loop"] = plain_transactional_loop(deployment, movements, volume)
    for peer in ("kafka_streams", "plain_transactional_loop"):
        if peer in found:
            found[f"stocksync_ratio_to_{peer}"] = round(
                stocksync["movements_per_s"] / found[peer]["movements_per_s"], 3)
    return found


def plain_transactional_loop(deployment: Deployment, movements: int, volume: Volume) -> dict[str, Any]:
    """The floor for stocksync's output contract: a confluent-kafka transactional loop (read_committed, a
    transaction every 100 ms with its input offsets) that decodes each message and writes, per movement, the
    records and bytes `volume` says (padded values; no rules, no encoding)."""
    codec = default_codec()
    out_topic = f"{deployment.settings.topic_prefix}.plain-tx-out"
    admin = new_admin(deployment.servers)
    for future in admin.create_topics([NewTopic(out_topic, PARTITIONS, 1)]).values():
        future.result()
    group = f"plain-tx-{uuid.uuid4()}"
    consumer = Consumer({"bootstrap.servers": deployment.servers, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    producer = new_transactional_producer(deployment.servers, f"{group}-tx", **{"linger.ms": 5})
    producer.init_transactions(30)
    padding = bytes(round(volume.bytes / volume.records))  # cut per record to leave room for its key
    consumer.subscribe(deployment.network_inputs())
    done, began, owed, open_since = 0, 0.0, 0.0, 0.0
    with CpuSampler(lambda: os.getpid()) as cpu:
        while done < movements:
            batch = consumer.consume(500, 1.0)
            if batch and not began:
                began = time.time()
            if batch and not open_since:
                producer.begin_transaction()
                open_since = time.monotonic()
            for r in movements_of(batch, codec):
                owed += volume.records
                key = r["sku"].encode()
                value = padding[len(key):]
                while owed >= 1.0:
                    _produce(producer, out_topic, value, key)
                    owed -= 1.0
                done += 1
            producer.poll(0)
            if open_since and (time.monotonic() - open_since > 0.1 or done >= movements):
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                     consumer.consumer_group_metadata())
                producer.commit_transaction()
                open_since = 0.0
        done_at = time.time()
    consumer.close()
    seconds = done_at - began
    return {"movements": done, "seconds": round(seconds, 2), "movements_per_s": round(done / seconds),
            "cpu_us_per_movement": round(cpu.since(began) * 1e6 / done, 1),
            "wrote_per_movement": written(deployment.servers, [out_topic], done).summary()}


def process_tree(pid: int) -> list[int]:
    """The process and its child processes (a worker started with --processes: the parent and its workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), its child processes' included, from /proc."""
    def own(one: int) -> float:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return own(pid) + sum(_or_zero(own, child) for child in process_tree(pid)[1:])


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory, its child processes' added."""
    def own(one: int) -> float:
        status = Path(f"/proc/{one}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024

    return round(own(pid) + sum(_or_zero(own, child) for child in process_tree(pid)[1:]), 1)


def _or_zero(measure: Callable[[int], float], pid: int) -> float:
    try:
        return measure(pid)
    except (OSError, IndexError):  # gone meanwhile
        return 0.0


class CpuSampler:
    """A process's CPU time, sampled from /proc every 20 ms in a thread while in the `with` block, so that the CPU
    it spent from any moment in the block to the block's end can be told afterwards (the moment a job began its
    work is often known only later)."""

    def __init__(self, pid: Callable[[], int | None]) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._take()  # the block's end
        self.stopping.set()
        self.thread.join(5)

    def since(self, moment: float) -> float:
        """CPU seconds from `moment` (epoch seconds) to the block's end."""
        before = max((cpu for at, cpu in self.samples if at <= moment), default=0.0)
        return self.samples[-1][1] - before

    def _sample(self) -> None:
        while not self.stopping.is_set():
            self._take()
            time.sleep(0.02)

    def _take(self) -> None:
        pid = self.pid()
        try:
            if pid is not None:
                self.samples.append((time.time(), cpu_seconds(pid)))
        except (OSError, IndexError):
            pass  # not started yet, or gone


def plain_loop(deployment: Deployment, movements: int) -> dict[str, Any]:
    """The floor: decode, a dict of on_hand, one Avro change event per movement (at-least-once)."""
    codec = default_codec()
    out_topic = f"{deployment.settings.topic_prefix}.plain-out"
    admin = new_admin(deployment.servers)
    for future in admin.create_topics([NewTopic(out_topic, PARTITIONS, 1)]).values():
        future.result()
    consumer = Consumer({"bootstrap.servers": deployment.servers, "group.id": f"plain-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": deployment.servers, "linger.ms": 5, "acks": "all",
                         "enable.idempotence": True})
    consumer.subscribe(deployment.network_inputs())
    on_hand: dict[tuple[str, str], int] = defaultdict(int)
    done, began, last_commit = 0, 0.0, time.monotonic()
    while done < movements:
        batch = consumer.consume(500, 1.0)
        if batch and not began:
            began = time.monotonic()
        for r in movements_of(batch, codec):
            key = (r["sku"], r["location"] or "")
            kind, quantity = r["kind"], r["quantity"]
            if kind in ("sale",):
                on_hand[key] -= quantity
            elif kind in ("receipt", "return", "adjustment"):
                on_hand[key] += quantity
            elif kind == "count":
                on_hand[key] = quantity
            value = codec.encode(Schema.POSITION_STATE, {
                "sku": r["sku"], "location": key[1], "figures": {
                    "on_hand": on_hand[key], "reserved": 0, "safety_stock": 0, "in_transit": 0,
                    "available": on_hand[key]}, "version": done, "updated_at": r["occurred_at"]})
            _produce(producer, out_topic, value, f"{key[0]}|{key[1]}".encode())
            done += 1
        producer.poll(0)
        if batch and time.monotonic() - last_commit > 1.0:
            producer.flush()
            _commit(consumer)
            last_commit = time.monotonic()
    producer.flush()
    _commit(consumer)
    seconds = time.monotonic() - began
    consumer.close()
    return {"movements": done, "seconds": round(seconds, 2), "movements_per_s": round(done / seconds)}


def movements_of(batch: list[Any], codec: SingleObjectCodec) -> Iterator[dict[str, Any]]:
    """The movement records of consumed input messages (a MovementBatch's each), unreadable ones left out."""
    for message in batch:
        raw = message.value()
        if message.error() is not None or raw is None:
            continue
        schema, record = codec.decode(raw)
        yield from record["movements"] if schema == Schema.MOVEMENT_BATCH else [record]


def _produce(producer: Producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # librdkafka's queue is full: let it send
            producer.poll(0.05)


def _commit(consumer: Consumer) -> None:
    """Commit what was consumed; nothing new since the last commit is not an error here."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:  # noqa: SLF001 - librdkafka's names
            raise


class FeedWatch:
    """When each SKU's first update arrives on a channel's ATS feed (read from its end onwards, in a thread)."""

    def __init__(self, deployment: Deployment, channel: str) -> None:
        self.feed, self.servers = deployment.registry.ats(channel).name, deployment.servers
        self.arrived: dict[str, float] = {}
        self.positioned, self.stopping = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> FeedWatch:
        self.thread.start()
        if not self.positioned.wait(30):
            raise SystemExit(f"could not read {self.feed}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)

    def _follow(self) -> None:
        consumer = new_consumer(self.servers, f"bench-{uuid.uuid4()}")
        consumer.assign(start_positions(consumer, self.feed, from_beginning=False)[0])
        self.positioned.set()
        while not self.stopping.is_set():
            message = consumer.poll(0.05)
            key = None if message is None or message.error() else message.key()
            if key is not None:
                self.arrived.setdefault(key.decode(), time.time())
        consumer.close()

    def wait(self, skus: set[str], timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        while not skus <= self.arrived.keys():
            if time.time() > deadline:
                return False
            time.sleep(0.02)
        return True


def latency(deployment: Deployment, rate: float, seconds: float, background: list[Movement] | None = None
            ) -> dict[str, Any]:
    """Receipts of new SKUs through the channel client at `rate`/s; produced -> web's ATS update consumed. With
    `background`, nine in ten of the movements offered are those (the workload's mix on SKUs the worker holds,
    sent again under new event ids) and the new SKUs' receipts are probes timed through the same queue."""
    with FeedWatch(deployment, "web") as watch:
        sent, achieved = _offer(deployment, rate, seconds, background)
        watch.wait(set(sent), 60)
        values = sorted((watch.arrived[s] - t) * 1000 for s, t in sent.items() if s in watch.arrived)
    result: dict[str, Any] = {"offered_per_s": rate, "achieved_per_s": round(achieved), "probes": len(sent),
                              "received": len(values)}
    if background is not None:
        result["background"] = "the workload's mix, 9 in 10 movements offered"
    if not values:
        return result

    def pct(p: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * p))], 1)

    result["latency_ms"] = {"p50": round(statistics.median(values), 1), "p95": pct(0.95), "p99": pct(0.99),
                            "max": round(values[-1], 1)}
    return result


def _offer(deployment: Deployment, rate: float, seconds: float, background: list[Movement] | None
           ) -> tuple[dict[str, float], float]:
    """Send for `seconds` at `rate`/s (see `latency`); returns when each probe SKU was sent, and the rate
    achieved."""
    tag = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    where = sorted(deployment.network.channels["wms"].locations)[0]
    # The workload's mix again and again for as long as it takes, each round under event ids of its own.
    mix = ((m, round_) for round_ in itertools.count() for m in background) if background else iter(())
    with contextlib.ExitStack() as stack:
        clients = {channel: stack.enter_context(ChannelClient(channel, deployment.servers,
                                                              settings=deployment.settings, linger_ms=2))
                   for channel in sorted({m.channel for m in background or []} | {"wms"})}
        began, i = time.time(), 0
        while time.time() - began < seconds:
            found = next(mix, None) if i % 10 else None
            if found is None:
                sku = f"LAT-{tag}-{i:07d}"
                sent[sku] = time.time()
                clients["wms"].receipt(sku, where, 5, event_id=f"lat-{tag}-{i}")
            else:
                m, round_ = found
                clients[m.channel].send(_sent_again(m, f"{tag}{round_}"))
            i += 1
            pause = began + i / rate - time.time()
            if pause > 0:
                time.sleep(pause)
        return sent, i / (time.time() - began)


def _sent_again(m: Movement, tag: str) -> Movement:
    """A workload movement as a new event happening now (its hold, if it places one, open for an hour)."""
    now = int(time.time() * 1000)
    return dataclasses.replace(m, event_id=f"{tag}-{m.event_id}", occurred_at=now,
                               reservation_id=f"{tag}-{m.reservation_id}" if m.reservation_id else None,
                               expires_at=now + 3_600_000 if m.expires_at is not None else None)


def failover(deployment: Deployment, owner: WorkerRun, data: Path) -> tuple[WorkerRun, dict[str, Any]]:
    """A second worker joins `owner` and keeps standby replicas of its partitions; once they are caught up, `owner`
    is killed (SIGKILL) and one receipt per partition is reported: the seconds from the kill until every one of
    them is on the web feed (the session timeout, the rebalance, the promotion, the restore of what the standby
    lacked, then the movement itself)."""
    survivor = WorkerRun(deployment, data)
    survivor.start()
    deadline = time.monotonic() + 600
    while not (survivor.metric("stocksync_standby_records_total") > 0
               and survivor.metric("stocksync_recovery_remaining_records", kind="standby") == 0):
        if time.monotonic() > deadline:
            raise SystemExit("the second worker's standby replicas did not catch up within 600 s")
        time.sleep(0.5)
    standby_records = survivor.metric("stocksync_standby_records_total")
    tag = uuid.uuid4().hex[:6]
    probes: dict[int, str] = {}
    for i in range(10_000):
        probes.setdefault(sku_partition(f"FAIL-{tag}-{i}", PARTITIONS), f"FAIL-{tag}-{i}")
        if len(probes) == PARTITIONS:
            break
    where = sorted(deployment.network.channels["wms"].locations)[0]
    restored_before = survivor.metric("stocksync_restored_records_total")
    with FeedWatch(deployment, "web") as watch:
        killed = time.time()
        owner.stop(signal.SIGKILL)
        with ChannelClient("wms", deployment.servers, settings=deployment.settings, linger_ms=2) as wms:
            for sku in probes.values():
                wms.receipt(sku, where, 5, event_id=f"fail-{sku}")
        served = watch.wait(set(probes.values()), 300)
    return survivor, {
        "served_again_s": round(max(watch.arrived[s] for s in probes.values()) - killed, 2) if served else None,
        "session_timeout_s": float(SESSION_TIMEOUT_S),
        "standby_records_before_kill": int(standby_records),
        "restored_records_at_takeover": int(survivor.metric("stocksync_restored_records_total") - restored_before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movements", type=int, default=200_000)
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--pack", type=int, default=50, help="movements per message, packed as the SDK does")
    parser.add_argument("--rates", default="200,2000", help="offered rates for the latency phase (per second)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each latency phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", default="",
                        help="phases to leave out: kstreams,single,latency (latency_alone: only the new SKUs' "
                             "probes alone),recovery,failover,processes")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="sample the worker with py-spy during the packed throughput phase (collapsed stacks "
                             "into FILE; the top functions by own time in the JSON)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="stocksync-compare-"))
    base: Settings = load_settings(partitions=PARTITIONS)
    cluster = start_cluster(base, tmp / "kafka")
    run = uuid.uuid4().hex[:6]
    net = network(args.locations)
    movements = workload(args.movements, args.skus, args.zipf, net, args.seed)
    per_sku: dict[str, int] = defaultdict(int)
    for m in movements:
        per_sku[m.sku] += 1
    result: dict[str, Any] = {
        "benchmark": "compare", "broker": cluster.origin, "partitions": PARTITIONS,
        "workload": {"movements": args.movements, "skus": args.skus, "locations": args.locations, "zipf": args.zipf,
                     "hottest_sku_movements": max(per_sku.values()),
                     "mix": dict(sorted(((k.value, n) for k in Kind
                                         if (n := sum(1 for m in movements if m.kind is k))),
                                        key=lambda kv: -kv[1]))}}
    workers: list[WorkerRun] = []
    try:
        packed = Deployment(cluster.bootstrap_servers, f"cmp-{run}-packed", net, tmp)
        result["workload"]["packed_messages"] = packed.produce(movements, args.pack)
        result["plain_loop_packed"] = plain_loop(packed, args.movements)
        if "kstreams" not in skip:
            result["kafka_streams_packed"] = [kafka_streams(packed, args.movements, tmp, base.cache_dir, guarantee)
                                              for guarantee in ("at_least_once", "exactly_once_v2")]
        worker, result["stocksync_packed"] = throughput(packed, args.movements, tmp / "packed-data", args.profile)
        workers.append(worker)
        result["stocksync_packed"]["ratio_to_plain_loop"] = round(
            result["stocksync_packed"]["movements_per_s"] / result["plain_loop_packed"]["movements_per_s"], 3)
        worker.stop()  # the peers at equal volume run alone
        result["equal_volume_packed"] = equal_volume(packed, args.movements, result["stocksync_packed"], tmp,
                                                     base.cache_dir, "kstreams" not in skip)
        if not {"latency", "recovery", "failover"} <= skip:
            worker.start()
        if "latency" not in skip:
            rates = [float(rate) for rate in args.rates.split(",")]
            if "latency_alone" not in skip:
                result["latency"] = [latency(packed, rate, args.seconds) for rate in rates]
            result["latency_in_mix"] = [latency(packed, rate, args.seconds, movements) for rate in rates]
        if "recovery" not in skip:
            worker.stop(signal.SIGKILL)
            result["recovery"] = {"positions": len({(m.sku, m.location) for m in movements if m.location}),
                                  "from_local_rocksdb_s": round(worker.start(), 2)}
            worker.stop(signal.SIGKILL)
            shutil.rmtree(worker.data)
            result["recovery"]["from_changelog_s"] = round(worker.start(), 2)
        if "failover" not in skip:
            survivor, result["failover"] = failover(packed, worker, tmp / "standby-data")
            workers.append(survivor)
            survivor.stop()
        worker.stop()
        if "processes" not in skip:
            procs = Deployment(cluster.bootstrap_servers, f"cmp-{run}-procs", net, tmp)
            procs.produce(movements, args.pack)
            worker, result["stocksync_packed_2_processes"] = throughput(procs, args.movements, tmp / "procs-data",
                                                                        processes=2)
            workers.append(worker)
            worker.stop()
            result["stocksync_packed_2_processes"]["ratio_to_one_process"] = round(
                result["stocksync_packed_2_processes"]["movements_per_s"]
                / result["stocksync_packed"]["movements_per_s"], 3)
        if "single" not in skip:
            single = Deployment(cluster.bootstrap_servers, f"cmp-{run}-single", net, tmp)
            single.produce(movements, 1)
            result["plain_loop_single"] = plain_loop(single, args.movements)
            if "kstreams" not in skip:
                result["kafka_streams_single"] = [kafka_streams(single, args.movements, tmp, base.cache_dir,
                                                                "exactly_once_v2")]
            worker, result["stocksync_single"] = throughput(single, args.movements, tmp / "single-data")
            workers.append(worker)
            worker.stop()
            result["stocksync_single"]["ratio_to_plain_loop"] = round(
                result["stocksync_single"]["movements_per_s"] / result["plain_loop_single"]["movements_per_s"], 3)
            result["equal_volume_single"] = equal_volume(single, args.movements, result["stocksync_single"], tmp,
                                                         base.cache_dir, "kstreams" not in skip)
        result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                             "note": "broker, worker and load generator share these cores"}
        print(json.dumps(result, indent=2))
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
