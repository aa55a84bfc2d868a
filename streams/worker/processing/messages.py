"""What a batch is made of and what handling it reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.domain import Outcome


@dataclass(frozen=True, slots=True)
class Inbound:
    """One input message as read: where it came from, its key and value, and its broker timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


@dataclass
class BatchResult:
    outcomes: int = 0
    applied: list[Outcome] = field(default_factory=list)  # counted in the metrics once the batch commits
    dead_letters: int = 0
    rerouted: int = 0
    skus_written: int = 0
