"""What a SKU remembers of its history, kept in small records beside the SKU's head instead of inside it.

A best-selling SKU sees a million events within the horizon. Its head (positions, version, times) stays small;
every event id it has applied, every delta a later count must reconcile, every open hold and transfer lives in a
record of its own, keyed by the SKU plus what it is, in the SKU's partition. Applying a movement reads and writes
only the records it concerns, so its cost and the bytes written do not grow with the history:

- `e:<event key>`: the event's time and result (dedupe, and the decision a re-sent request gets).
- `x:<bucket>:<n>`: the event keys remembered in one time bucket (one record per batch and bucket), so the
  bucket's events can be forgotten once the horizon has passed it.
- `d:<location>:<bucket>:<n>`: the deltas recorded at a location in one bucket (one record per batch), and
  `s:<location>`: per bucket, their sum and how many such records there are. A count as of T adds the sums of
  the buckets after T's and the deltas after T in T's own bucket.
- `r:<reservation key>`: an open hold; `t:<transfer id>`: a transfer still on the road.

A bucket is 1/64 of the horizon. Records of buckets entirely at or before the SKU's floor are deleted a bounded
number at a time; until then they are ignored (an event at or before the floor is never looked up, and a
remembered event at or before it counts as forgotten), so the rules are exact whatever the deletion has reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

MAX_CHUNK_ENTRIES = 500  # entries per bucket record: keeps each record well under 256 KiB
EXPIRY_BUDGET = 2_000  # records deleted per batch at most (the rest in later batches)


@dataclass(frozen=True, slots=True)
class SeenEvent:
    at: int  # event time
    result: str  # what a duplicate repeats (a reservation request's decision) or the status


@dataclass(frozen=True, slots=True)
class EventChunk:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeltaChunk:
    entries: tuple[tuple[int, str, int], ...]  # (event time, event key, delta)


@dataclass(slots=True)
class DeltaSummary:
    buckets: dict[int, tuple[int, int]] = field(default_factory=dict)  # bucket -> (sum of deltas, records)


@dataclass(frozen=True, slots=True)
class TransferInTransit:
    destination: str
    outstanding: int  # units shipped minus units received


class RecordStore(Protocol):
    """Where a SKU's history records live (the worker's stock table, or a dict). Keys are the ones above."""

    def get(self, key: str) -> object | None: ...

    def put(self, key: str, value: object) -> None: ...

    def delete(self, key: str) -> None: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, object]]: ...


class MemoryRecords:
    """A RecordStore in dicts, one per kind of record (the two characters every key starts with), so that a scan of
    one kind (the open holds) does not walk the SKU's every event: the domain's tests and the simulator's replay."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, object]] = {}

    @property
    def data(self) -> dict[str, object]:
        """Every record, by key."""
        return {key: value for records in self.kinds.values() for key, value in records.items()}

    def get(self, key: str) -> object | None:
        return self.kinds.get(key[:2], {}).get(key)

    def put(self, key: str, value: object) -> None:
        self.kinds.setdefault(key[:2], {})[key] = value

    def delete(self, key: str) -> None:
        self.kinds.get(key[:2], {}).pop(key, None)

    def scan(self, prefix: str) -> Iterator[tuple[str, object]]:
        kinds = [self.kinds.get(prefix[:2], {})] if len(prefix) >= 2 else list(self.kinds.values())
        return iter([(k, v) for records in kinds for k, v in records.items() if k.startswith(prefix)])


@dataclass
class HistoryIndex:
    """What the head keeps about the history records: enough to find them again, bounded by the number of
    buckets in the horizon and of locations."""

    bucket_ms: int = 0  # fixed when the SKU is first seen (0: not yet), so its records keep their buckets
    event_chunks: dict[int, int] = field(default_factory=dict)  # bucket -> event-key records written
    delta_locations: dict[str, int] = field(default_factory=dict)  # location -> its oldest bucket with deltas


def event_key(key: str) -> str:
    return f"e:{key}"


def reservation_key(key: str) -> str:
    return f"r:{key}"


def transfer_key(transfer_id: str) -> str:
    return f"t:{transfer_id}"


def summary_key(location: str) -> str:
    return f"s:{location}"


def event_chunk_key(bucket: int, n: int) -> str:
    return f"x:{bucket}:{n}"


def delta_chunk_key(location: str, bucket: int, n: int) -> str:
    return f"d:{location}:{bucket}:{n}"


class History:
    """One SKU's history records for one batch: reads go to the store, new bucket entries are collected and
    written as one record per bucket (and location) by `flush`."""

    def __init__(self, records: RecordStore, index: HistoryIndex, bucket_ms: int) -> None:
        self.touched = not index.bucket_ms  # whether anything the SKU's head indexes may have changed
        if not index.bucket_ms:
            index.bucket_ms = max(1, bucket_ms)
        self.records, self.index, self.bucket_ms = records, index, index.bucket_ms
        self._new_events: dict[int, list[str]] = {}
        self._new_deltas: dict[tuple[str, int], list[tuple[int, str, int]]] = {}
        self._summaries: dict[str, DeltaSummary] = {}
        self._changed: set[str] = set()  # locations whose summary changed in this batch

    def bucket(self, at: int) -> int:
        return at // self.bucket_ms

    # --- events ----------------------------------------------------------------------------------------------
    def seen(self, key: str, floor: int) -> SeenEvent | None:
        """The event as remembered, unless it lies at or before the floor (forgotten, even if not yet deleted)."""
        found = self.records.get(event_key(key))
        return found if isinstance(found, SeenEvent) and found.at > floor else None

    def remember(self, key: str, at: int, result: str) -> None:
        self.touched = True
        before = self.records.get(event_key(key))
        self.records.put(event_key(key), SeenEvent(at, result))
        if not isinstance(before, SeenEvent) or self.bucket(before.at) != self.bucket(at):
            self._new_events.setdefault(self.bucket(at), []).append(key)

    # --- deltas ----------------------------------------------------------------------------------------------
    def record_delta(self, location: str, at: int, key: str, delta: int) -> None:
        self.touched = True
        bucket = self.bucket(at)
        self._new_deltas.setdefault((location, bucket), []).append((at, key, delta))
        summary = self._summary(location)
        total, records = summary.buckets.get(bucket, (0, 0))
        summary.buckets[bucket] = (total + delta, records)
        self._changed.add(location)

    def deltas_after(self, location: str, at: int) -> int:
        """The sum of the deltas recorded at `location` with an event time after `at`."""
        if location not in self.index.delta_locations and location not in self._changed:
            return 0
        summary = self._summary(location)
        bucket = self.bucket(at)
        total = sum(s for b, (s, _) in summary.buckets.items() if b > bucket)
        _, records = summary.buckets.get(bucket, (0, 0))
        for n in range(records):
            chunk = self.records.get(delta_chunk_key(location, bucket, n))
            if isinstance(chunk, DeltaChunk):
                total += sum(d for t, _, d in chunk.entries if t > at)
        total += sum(d for t, _, d in self._new_deltas.get((location, bucket), ()) if t > at)
        return total

    def _summary(self, location: str) -> DeltaSummary:
        summary = self._summaries.get(location)
        if summary is None:
            found = self.records.get(summary_key(location))
            summary = found if isinstance(found, DeltaSummary) else DeltaSummary()
            summary = DeltaSummary(dict(summary.buckets))  # changed here; written by flush
            self._summaries[location] = summary
        return summary

    # --- writing and forgetting ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the bucket records collected in this batch (at most MAX_CHUNK_ENTRIES entries each)."""
        for bucket, keys in self._new_events.items():
            for start in range(0, len(keys), MAX_CHUNK_ENTRIES):
                n = self.index.event_chunks.get(bucket, 0)
                self.records.put(event_chunk_key(bucket, n), EventChunk(tuple(keys[start:start + MAX_CHUNK_ENTRIES])))
                self.index.event_chunks[bucket] = n + 1
        for (location, bucket), entries in self._new_deltas.items():
            summary = self._summary(location)
            for start in range(0, len(entries), MAX_CHUNK_ENTRIES):
                total, n = summary.buckets[bucket]
                self.records.put(delta_chunk_key(location, bucket, n),
                                 DeltaChunk(tuple(entries[start:start + MAX_CHUNK_ENTRIES])))
                summary.buckets[bucket] = (total, n + 1)
        for location in self._changed:
            summary = self._summaries[location]
            if summary.buckets:
                self.records.put(summary_key(location), summary)
                self.index.delta_locations[location] = min(summary.buckets)
            else:
                self.records.delete(summary_key(location))
                self.index.delta_locations.pop(location, None)
        self._new_events, self._new_deltas, self._summaries, self._changed = {}, {}, {}, set()

    def forget_until(self, floor: int, budget: int = EXPIRY_BUDGET) -> None:
        """Delete the records of buckets that lie entirely at or before `floor`, at most about `budget` of them
        (the rest in a later call). Call after `flush`, which it calls again for the summaries it changes."""
        last_expired = (floor + 1) // self.bucket_ms - 1  # buckets up to this one end at or before the floor
        for bucket in sorted(b for b in self.index.event_chunks if b <= last_expired):
            while self.index.event_chunks.get(bucket, 0) > 0 and budget > 0:
                self.touched = True
                n = self.index.event_chunks[bucket] - 1
                chunk = self.records.get(event_chunk_key(bucket, n))
                for key in chunk.keys if isinstance(chunk, EventChunk) else ():
                    found = self.records.get(event_key(key))
                    if isinstance(found, SeenEvent) and found.at <= floor:  # not remembered again since
                        self.records.delete(event_key(key))
                        budget -= 1
                self.records.delete(event_chunk_key(bucket, n))
                budget -= 1
                self.index.event_chunks[bucket] = n
            if self.index.event_chunks.get(bucket) == 0:
                del self.index.event_chunks[bucket]
        for location in sorted(loc for loc, oldest in self.index.delta_locations.items() if oldest <= last_expired):
            if budget <= 0:
                break
            self.touched = True
            summary = self._summary(location)
            for bucket in sorted(b for b in summary.buckets if b <= last_expired):
                _, records = summary.buckets.pop(bucket)
                for n in range(records):
                    self.records.delete(delta_chunk_key(location, bucket, n))
                budget -= records
            self._changed.add(location)
        self.flush()
