"""Room on the disk that holds a worker's state: below a minimum the worker takes no input until there is room again.

RocksDB cannot apply a batch to a full disk, and the batch's transaction would be committed by then: the local
store would fall behind its changelog. Checked before each batch instead, the worker stops taking input while the
disk is short of room (nothing is read past, nothing lost), says so once, is not ready, and goes on by itself
once room comes back."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("stocksync.worker")

CHECK_S = 1.0  # how often the free space is looked at (a stat call: cheap, but not for every message)


class DiskRoom:
    def __init__(self, path: Path, minimum_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.minimum, self.clock = path, minimum_bytes, clock
        self._checked_at = float("-inf")
        self._short = ""

    def shortage(self) -> str:
        """Why there is not room enough now ("" when there is), looked at most every CHECK_S."""
        now = self.clock()
        if now - self._checked_at >= CHECK_S:
            self._checked_at = now
            self._short = self._look()
        return self._short

    async def room(self, stopped: str, going_on: str, waiting: Callable[[], None] = lambda: None) -> None:
        """Wait while the disk is short of room (looked at every CHECK_S), saying once that the worker has
        `stopped` something, and once room is back that it is `going_on`; `waiting` is called meanwhile."""
        if not self.shortage():
            return
        log.error("%s: %s until there is room", self.shortage(), stopped)
        while self.shortage():
            await asyncio.sleep(CHECK_S)
            waiting()
        log.warning("the state directory has room again: %s", going_on)

    def _look(self) -> str:
        path = self.path
        while not path.exists() and path != path.parent:  # not made yet: its filesystem is its parent's
            path = path.parent
        try:
            free = shutil.disk_usage(path).free
        except OSError as exc:
            return f"the state directory {self.path} cannot be looked at: {exc}"
        if free < self.minimum:
            return (f"the state directory {self.path} has {free / 2**20:.1f} MiB free, under the "
                    f"{self.minimum / 2**20:.0f} MiB minimum (STOCKSYNC_MIN_FREE_DISK_MB)")
        return ""

