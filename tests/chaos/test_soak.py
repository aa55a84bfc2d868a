"""The soak in a short form for the test suite: a minute and a half at a steady rate through two workers, each
killed once, sampled every 25 s; nothing lost, doubled, mismatched or gone back. The long form is
`python -m tests.chaos.soak` (an hour, docs/guarantees.md)."""

from __future__ import annotations

from pathlib import Path

from streams.dev.local_kafka import LocalCluster
from tests.chaos.soak import Soak


def test_a_short_soak_with_a_kill_of_each_worker_loses_nothing_and_reports_each_interval(
        local_cluster: LocalCluster, tmp_path: Path) -> None:
    result = Soak(local_cluster.bootstrap_servers, tmp_path, seconds=75, interval_s=25, rate=40, skus=200,
                  seed=3).go()
    assert result["problems"] == [], result["problems"]
    assert (result["lost"], result["double_counted"], result["mismatched"], result["went_back"]) == (0, 0, 0, 0)
    assert result["movements"] >= 40 * 75 and result["ledgered"] > 0
    assert [kill["worker"] for kill in result["kills"]] == ["w1", "w2"]
    intervals = result["intervals"]
    assert len(intervals) >= 3
    for sample in intervals:
        assert sample["changelog_records"] > 0 and sample["input_lag"] >= 0
        assert set(sample["workers"]) == {"w1", "w2"}
        assert all(w["rss_mb"] and w["open_files"] and w["state_mb"] >= 0 for w in sample["workers"].values())
        assert all(0 <= w["rocksdb_mb"] < w["rss_mb"] for w in sample["workers"].values()), sample["workers"]
    # RocksDB's part of the memory is measured (its memtables hold what a worker applied).
    assert any(w["rocksdb_mb"] > 0 for sample in intervals for w in sample["workers"].values())
    assert intervals[0]["latency_ms"]["p50"] is not None and intervals[0]["latency_ms"]["p99"] is not None
    assert intervals[-1]["input_lag"] == 0  # settled
