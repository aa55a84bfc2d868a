"""The chaos harness in a bounded form for the test suite: one run on a three-node cluster with the faults that
matter most (a worker killed, a zombie worker, the ledger's leader broker killed, a wrong partitioner, poison).
The full form is `python -m tests.chaos.run` (README)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev.local_kafka import LocalCluster
from streams.settings import load_settings
from tests.chaos.run import Run, summary


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    settings = load_settings()
    if settings.bootstrap_servers:
        pytest.skip("kills its brokers: needs the local jars, not a configured cluster")
    found = LocalCluster(home=settings.broker_home, workdir=tmp_path_factory.mktemp("chaos-cluster"), size=3,
                         kafka_version=settings.kafka_version, heap="384m").start()
    yield found
    found.stop()


def test_a_chaos_run_loses_doubles_and_mismatches_nothing(cluster: LocalCluster, tmp_path: Path) -> None:
    faults = ["kill_worker", "pause_worker", "kill_broker", "wrong_partitioner", "poison"]
    run = Run(cluster, tmp_path, seed=5, faults=faults, movements=2_500).go()
    result = summary([run])
    assert not result["failed"], run["problems"]
    assert sorted(run["faults"]) == sorted(faults)
    assert (result["lost"], result["double_counted"], result["mismatched"], result["went_back"]) == (0, 0, 0, 0)
    assert result["movements"] > 2_500
