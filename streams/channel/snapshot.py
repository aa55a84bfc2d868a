"""A full stock snapshot from an ERP or WMS, loaded as counts, and the reconciliation report of what it changed.

The file is CSV with a header naming at least `sku`, `location` and `on_hand` (more columns are ignored), plain
or gzip. Each row becomes a count at `as_of` (the time the snapshot was taken: movements after it are reconciled
on top, see the stock domain). Its event id comes from the row's content and `as_of`: loading the same file again
sends the same events, which change nothing. A row that is not a valid count of this channel is rejected with its
line and reason, and nothing is sent for it.

The report is read back from the ledger once the workers have read every count sent: the positions whose
on_hand changed, by how many units, the largest differences, and the counts that changed nothing (already in
force: a re-run, or a count older than one in force)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import heapq
import io
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from streams.control.admin import await_inputs_read
from streams.domain import InvalidMovement, Kind, Movement, Network
from streams.errors import ConfigError, StocksyncError
from streams.kafka.clients import KafkaError, TopicPartition, end_offsets, new_consumer, reader_group
from streams.kafka.topics import TopicRegistry
from streams.security import KafkaConnection
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.schemas import Schema

if TYPE_CHECKING:
    from streams.channel.client import ChannelClient

COLUMNS = ("sku", "location", "on_hand")
EVENT_PREFIX = "snapshot:"
LARGEST = 10


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


def open_snapshot(path: Path) -> tuple[TextIO, BinaryIO]:
    """The file as text, and the file itself (its position says how much is read); gzip is recognised by its
    first bytes, whatever the name."""
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    gzipped = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    binary: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw  # type: ignore[assignment]
    return io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=""), raw


def event_id(as_of: int, sku: str, location: str, on_hand: int) -> str:
    """The count's event id: the same row of the same snapshot is the same event (a re-run changes nothing)."""
    digest = hashlib.sha256(f"{sku}\x1f{location}\x1f{on_hand}".encode()).hexdigest()[:24]
    return f"{EVENT_PREFIX}{as_of}:{digest}"


def parse_snapshot(text: Iterable[str], network: Network, channel: str, as_of: int
                   ) -> Iterator[Movement | Rejected]:
    """Counts of `channel` at `as_of`, one per valid row, in file order; a Rejected (line, reason) for the others.
    ConfigError when the header lacks a column the format needs."""
    owned = network.channels[channel].locations if channel in network.channels else frozenset()
    reader = csv.reader(text)
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise ConfigError(f"the snapshot's header {header} lacks {missing} (it needs {', '.join(COLUMNS)})")
    at = {name: header.index(name) for name in COLUMNS}
    seen: set[tuple[str, str]] = set()
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            yield Rejected(line, f"{len(row)} columns, the header has {len(header)}")
            continue
        sku, location, raw = (row[at[name]].strip() for name in COLUMNS)
        try:
            on_hand = int(raw)
        except ValueError:
            yield Rejected(line, f"on_hand {raw!r} is not a whole number")
            continue
        if location not in network.locations:
            yield Rejected(line, f"location {location!r} is not in the network")
            continue
        if location not in owned:
            yield Rejected(line, f"location {location!r} is not one of {channel}'s")
            continue
        if (sku, location) in seen:
            yield Rejected(line, f"{sku} at {location} again (the first row for it counts)")
            continue
        try:
            movement = Movement(Kind.COUNT, event_id(as_of, sku, location, on_hand), channel, sku, location,
                                on_hand, as_of)
        except InvalidMovement as exc:
            yield Rejected(line, str(exc))
            continue
        seen.add((sku, location))
        yield movement


@dataclass
class Reconciliation:
    """What a loaded snapshot did, from the ledger."""

    rows_sent: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    positions_changed: int = 0
    units_added: int = 0
    units_removed: int = 0
    largest: list[tuple[int, str, str, int, int]] = field(default_factory=list)  # (|diff|, sku, loc, before, after)
    seconds: float = 0.0

    @property
    def confirmed(self) -> int:
        return sum(self.statuses.values())

    def take(self, entry: dict[str, Any]) -> None:
        self.statuses[entry["status"]] += 1
        for change in entry["changes"]:
            before, after = change["before"]["on_hand"], change["after"]["on_hand"]
            if before == after:
                continue
            self.positions_changed += 1
            if after > before:
                self.units_added += after - before
            else:
                self.units_removed += before - after
            item = (abs(after - before), entry["sku"], change["location"], before, after)
            if len(self.largest) < LARGEST:
                heapq.heappush(self.largest, item)
            else:
                heapq.heappushpop(self.largest, item)

    def lines(self) -> list[str]:
        rate = self.rows_sent / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.rows_sent:,} counts sent in {self.seconds:.1f} s ({rate:,.0f}/s), "
               f"{len(self.rejected):,} rows rejected",
               f"{self.positions_changed:,} positions changed: +{self.units_added:,} units, "
               f"-{self.units_removed:,} units"]
        statuses = ", ".join(f"{count:,} {status}" for status, count in sorted(self.statuses.items()))
        unseen = self.rows_sent - self.confirmed
        out.append(f"ledger: {statuses or 'nothing'}"
                   + (f"; {unseen:,} changed nothing (already applied: the same rows were loaded before)"
                      if unseen else ""))
        if self.largest:
            out.append("largest differences:")
            out += [f"  {sku} at {location}: {before:,} -> {after:,} ({after - before:+,})"
                    for _, sku, location, before, after in sorted(self.largest, reverse=True)]
        if self.rejected:
            out.append("rejected rows:")
            out += [f"  line {r.line}: {r.reason}" for r in self.rejected[:20]]
            if len(self.rejected) > 20:
                out.append(f"  ... and {len(self.rejected) - 20:,} more")
        return out


class Progress:
    """One line on a terminal, rewritten twice a second; nothing when the output is not a terminal."""

    def __init__(self, total_bytes: int, out: TextIO = sys.stderr) -> None:
        self.total, self.out, self.started, self.shown = total_bytes, out, time.monotonic(), 0.0
        self.enabled = out.isatty()

    def show(self, rows: int, rejected: int, position: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.shown < 0.5):
            return
        self.shown = now
        rate = rows / max(now - self.started, 1e-9)
        share = min(1.0, position / self.total) if self.total else 1.0
        bar = "#" * int(share * 30)
        self.out.write(f"\r[{bar:<30}] {share:4.0%} {rows:,} counts ({rate:,.0f}/s), {rejected:,} rejected ")
        if final:
            self.out.write("\n")
        self.out.flush()


def read_ledger(kafka: KafkaConnection, topic: str, start: list[TopicPartition], channel: str, prefix: str,
                take: Callable[[dict[str, Any]], None], timeout_s: float, codec: SingleObjectCodec) -> None:
    """Every ledger entry of `channel` whose event id starts with `prefix`, from `start` to the current end."""
    consumer = new_consumer(kafka, reader_group(topic), **{"enable.partition.eof": True})
    try:
        consumer.assign(start)
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(start):
            if time.monotonic() > deadline:
                raise StocksyncError(f"could not read {topic} to its end in {timeout_s:.0f} s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:  # noqa: SLF001 - librdkafka's names
                    at_end.add(int(message.partition() or 0))
                    continue
                raise StocksyncError(f"reading {topic}: {error.str()}")
            value = message.value()
            if value is None:
                continue
            try:
                _, entry = codec.decode_as(value, Schema.LEDGER_ENTRY)
            except DecodeError:
                continue
            if entry["channel"] == channel and entry["event_id"].startswith(prefix):
                take(entry)
    finally:
        consumer.close()


def ledger_start(kafka: KafkaConnection, registry: TopicRegistry) -> list[TopicPartition]:
    """The ledger's current end, per partition: where this load's entries begin."""
    return [TopicPartition(topic, partition, end)
            for (topic, partition), end in end_offsets(kafka, [registry.ledger.name]).items()]


def load_snapshot(path: Path, client: ChannelClient, as_of: int, network: Network, kafka: KafkaConnection,
                  input_group: str, timeout_s: float = 3600.0, report: bool = True) -> Reconciliation:
    """Send every valid row of the snapshot as a count of `client`'s channel and, with `report`, wait until the
    workers have applied them and read what they did from the ledger (`kafka` must be allowed to read it and the
    workers' input group)."""
    registry, channel = client.registry, client.channel
    result = Reconciliation()
    start = ledger_start(kafka, registry) if report else []
    progress = Progress(path.stat().st_size)
    began = time.monotonic()
    text, raw = open_snapshot(path)
    with raw, text:
        for item in parse_snapshot(text, network, channel, as_of):
            if isinstance(item, Rejected):
                result.rejected.append(item)
            else:
                client.send(item)
                result.rows_sent += 1
            progress.show(result.rows_sent, len(result.rejected), raw.tell())
        progress.show(result.rows_sent, len(result.rejected), raw.tell(), final=True)
    client.flush(timeout_s)
    result.seconds = time.monotonic() - began
    if report and result.rows_sent:
        ends = end_offsets(kafka, [registry.restock(channel).name])
        await_inputs_read(kafka, input_group, ends, timeout_s)
        read_ledger(kafka, registry.ledger.name, start, channel, f"{EVENT_PREFIX}{as_of}:", result.take, timeout_s,
                    client.codec)
    return result
