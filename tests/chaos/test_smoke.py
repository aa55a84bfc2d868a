"""The chaos harness in a bounded form for the test suite: one run on a three-node cluster with the faults that
matter most (a worker killed on its disk and on an emptied one, a zombie worker, the ledger's leader broker
killed, a wrong partitioner, poison, a worker cut off from every broker past its session, an emptied disk
restored through a slow link), with orders sent throughout. The full form is `python -m tests.chaos.run`
(docs/guarantees.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.dev.local_kafka import LocalCluster
from streams.settings import load_settings
from tests.chaos.run import PROXY_SLOTS, Run, summary
from tests.chaos.toxiproxy import Toxiproxy, fetch_toxiproxy


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Toxiproxy]]:
    """A local three-node cluster whose workers reach it through Toxiproxy, a set of proxies per worker."""
    settings = load_settings()
    if settings.bootstrap_servers:
        pytest.skip("kills and restarts its nodes: needs the local jars, not a configured cluster")
    tmp = tmp_path_factory.mktemp("proxied")
    proxy = Toxiproxy(fetch_toxiproxy(settings.cache_dir), tmp / "toxiproxy.log")
    cluster = LocalCluster(home=settings.broker_home, workdir=tmp / "cluster", size=3,
                           kafka_version=settings.kafka_version, heap="384m", proxy_slots=PROXY_SLOTS)
    try:
        cluster.start()
        proxy.route(cluster)
        yield cluster, proxy
    finally:
        cluster.stop()
        proxy.stop()


def test_a_chaos_run_loses_doubles_and_mismatches_nothing(proxied: tuple[LocalCluster, Toxiproxy],
                                                          tmp_path: Path) -> None:
    cluster, proxy = proxied
    faults = ["kill_worker", "wipe_worker", "pause_worker", "kill_broker", "wrong_partitioner", "poison",
              "cut_worker", "slow_restore"]
    run = Run(cluster, tmp_path, seed=5, faults=faults, movements=2_500, proxy=proxy).go()
    result = summary([run])
    assert not result["failed"], run["problems"]
    assert sorted(run["faults"]) == sorted(faults)
    assert (result["lost"], result["double_counted"], result["mismatched"], result["went_back"]) == (0, 0, 0, 0)
    assert result["movements"] > 2_500
    assert result["orders"] >= 16 and result["orders_half_held_or_undecided"] == 0
