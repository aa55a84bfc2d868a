"""What a batch (or a timer) writes: an outbox of output records, and what to do once they are committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# (topic, key, value, partition); partition None: the murmur2 partitioner chooses by key.
OutputRecord = tuple[str, bytes, bytes | None, int | None]


class Outbox(Protocol):
    """Where a batch's output records go; nothing is visible before the batch's transaction commits."""

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None: ...

    def send_latest(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        """`send`, replacing what this outbox already holds for the topic and key (a compacted feed, where only
        the latest value counts: a best-seller applied in several steps of one batch gets one update)."""

    def on_commit(self, action: Callable[[], None]) -> None: ...


class ProducerOutbox:
    """Collects output records, and the in-memory bookkeeping (coalescing, the expiry index) that must follow
    them only if they are committed."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []
        self.committed_actions: list[Callable[[], None]] = []
        self._latest: dict[tuple[str, bytes], int] = {}  # where send_latest put each topic and key's record

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    def send_latest(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        at = self._latest.get((topic, key))
        if at is None:
            self._latest[(topic, key)] = len(self.records)
            self.records.append((topic, key, value, partition))
        else:
            self.records[at] = (topic, key, value, partition)

    def on_commit(self, action: Callable[[], None]) -> None:
        self.committed_actions.append(action)

    def committed(self) -> None:
        """The records are committed: run what waited for that."""
        actions, self.committed_actions = self.committed_actions, []
        for action in actions:
            action()
