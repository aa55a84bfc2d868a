"""The chaos harness in a bounded form for the test suite: one run on a three-node cluster with the faults that
matter most (a worker killed on its disk and on an emptied one, a zombie worker, the ledger's leader broker
killed, a wrong partitioner, poison), with orders sent throughout. The full form is `python -m tests.chaos.run`
(docs/guarantees.md)."""

from __future__ import annotations

from pathlib import Path

from streams.dev.local_kafka import LocalCluster
from tests.chaos.run import Run, summary


def test_a_chaos_run_loses_doubles_and_mismatches_nothing(local_cluster: LocalCluster, tmp_path: Path) -> None:
    faults = ["kill_worker", "wipe_worker", "pause_worker", "kill_broker", "wrong_partitioner", "poison"]
    run = Run(local_cluster, tmp_path, seed=5, faults=faults, movements=2_500).go()
    result = summary([run])
    assert not result["failed"], run["problems"]
    assert sorted(run["faults"]) == sorted(faults)
    assert (result["lost"], result["double_counted"], result["mismatched"], result["went_back"]) == (0, 0, 0, 0)
    assert result["movements"] > 2_500
    assert result["orders"] >= 16 and result["orders_half_held_or_undecided"] == 0
