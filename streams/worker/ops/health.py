"""Whether a worker is ready (it does its job now) and live (it can still do it without a restart), with reasons.

The parts of the worker report here: the broker probe whether Kafka answers, the input reader whether reading
works and how far behind it is, the batch unit of work when a batch is committed. /ready and /live only ask."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

BROKER_PROBE_S = 2.0  # how often the broker probe asks Kafka for metadata
BROKER_STALE_S = 10.0  # no answer from Kafka for this long: not ready
STALL_S = 30.0  # input waiting and no batch committed for this long: not ready
DEAD_STALL_S = 300.0  # ... for this long: not live either (a restart is the remedy left)


@dataclass
class Health:
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    broker_ok_at: float | None = None
    broker_error: str = ""
    reader_error: str = ""  # the input reader's last failure, until it reads again
    disk_room: Callable[[], str] = lambda: ""  # why the state's disk has too little room to take input ("": room)
    progress_at: float = 0.0  # a batch was committed, or nothing was waiting
    lag: int = 0  # input messages of this worker's partitions not yet applied

    def __post_init__(self) -> None:
        self.started = self.progress_at = self.clock()

    # --- what the parts report -------------------------------------------------------------------------------
    def broker_answered(self) -> None:
        self.broker_ok_at = self.clock()
        self.broker_error = ""

    def broker_failed(self, error: str) -> None:
        self.broker_error = error

    def reader_failed(self, error: str) -> None:
        self.reader_error = error

    def reader_read(self) -> None:
        self.reader_error = ""

    def committed(self) -> None:
        self.progress_at = self.clock()

    def input_lag(self, lag: int) -> None:
        if lag == 0 or self.lag == 0:
            self.progress_at = self.clock()  # nothing waited: no stall (a new backlog counts from here)
        self.lag = lag

    # --- what /ready and /live say ---------------------------------------------------------------------------
    def not_ready(self, recovered: bool, rebalancing: bool) -> list[str]:
        """Why the worker is not ready now ([] when it is)."""
        now = self.clock()
        reasons = []
        if not recovered:
            reasons.append("recovering its stock table partitions")
        if rebalancing:
            reasons.append("the workers are rebalancing")
        since = self.broker_ok_at if self.broker_ok_at is not None else self.started
        if now - since > BROKER_STALE_S:
            reasons.append(f"Kafka has not answered for {now - since:.0f} s ({self.broker_error or 'no answer'})")
        if self.reader_error:
            reasons.append(f"reading the inputs fails: {self.reader_error}")
        short = self.disk_room()
        if short:
            reasons.append(f"no input taken: {short}")
        if self.lag and now - self.progress_at > STALL_S:
            reasons.append(f"no batch committed for {now - self.progress_at:.0f} s while {self.lag} input "
                           "messages wait")
        return reasons

    def not_live(self, reader_running: bool) -> list[str]:
        """Why the worker cannot recover by itself and should be restarted ([] when it can)."""
        now = self.clock()
        reasons = []
        if not reader_running:
            reasons.append("the input reader has stopped")
        if self.lag and now - self.progress_at > DEAD_STALL_S:
            reasons.append(f"no batch committed for {now - self.progress_at:.0f} s while {self.lag} input "
                           "messages wait")
        return reasons
