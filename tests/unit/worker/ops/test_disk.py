"""Room on the state's disk: short below the minimum (saying how much is free), looked at once per interval, and
a state directory not made yet judged by the filesystem it will be made on."""

from __future__ import annotations

from pathlib import Path

from streams.worker.ops.disk import CHECK_S, DiskRoom
from streams.worker.ops.health import Health


def test_a_disk_with_less_than_the_minimum_free_is_short_and_says_how_much_is_free(tmp_path: Path) -> None:
    assert DiskRoom(tmp_path / "not-made-yet" / "data", 0).shortage() == ""
    short = DiskRoom(tmp_path, 2**62).shortage()
    assert "MiB free, under the" in short and "STOCKSYNC_MIN_FREE_DISK_MB" in short and str(tmp_path) in short


def test_the_free_space_is_looked_at_once_per_interval(tmp_path: Path) -> None:
    now = [0.0]
    room = DiskRoom(tmp_path, 0, clock=lambda: now[0])
    assert room.shortage() == ""
    room.minimum = 2**62  # the disk fills up
    now[0] += CHECK_S / 2
    assert room.shortage() == ""  # not looked at again yet
    now[0] += CHECK_S
    assert room.shortage() != ""


def test_a_worker_short_of_disk_is_not_ready_and_says_why() -> None:
    health = Health(disk_room=lambda: "the state directory d has 1.0 MiB free")
    health.broker_answered()
    assert health.not_ready(recovered=True, rebalancing=False) == [
        "no input taken: the state directory d has 1.0 MiB free"]
    assert health.not_live(reader_running=True) == []
