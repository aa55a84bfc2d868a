"""`stocksync load`: a WMS snapshot (gzip CSV) becomes counts at its time, every position ends at the snapshot's
figure plus what moved after it, the report says what changed (from the ledger), bad rows are rejected with
their line, and loading the same file again changes nothing."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time

from streams.domain import Kind, Movement
from tests.integration.conftest import repo_root
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def load(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": deployment.bootstrap,
           "STOCKSYNC_TOPIC_PREFIX": deployment.settings.topic_prefix, "STOCKSYNC_APP_ID": deployment.settings.app_id,
           "STOCKSYNC_PARTITIONS": str(deployment.partitions)}
    return subprocess.run([sys.executable, "-m", "streams.cli", "load", *args], cwd=repo_root(),
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_snapshot_is_loaded_as_counts_reported_and_idempotent(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    now = int(time.time() * 1000)
    as_of = now - 60_000
    # stocksync's view before: SKU-A has 10 at w1 and 4 at s1; a sale at w1 comes after the snapshot was taken.
    deployment.send_applied([
        Movement(Kind.RECEIPT, "r-a-w1", "wms", "SKU-A", "w1", 10, as_of - 60_000),
        Movement(Kind.RECEIPT, "r-a-s1", "wms", "SKU-A", "s1", 4, as_of - 60_000),
        Movement(Kind.SALE, "s-a-w1", "web", "SKU-A", "w1", 1, as_of + 10_000),
    ])
    rows = ["sku,location,on_hand,description",
            "SKU-A,w1,25,a jacket",  # +15 at the snapshot's time; the later sale still counts: 24
            "SKU-A,s1,4,a jacket",  # as stocksync thinks: no change
            "SKU-B,w2,7,boots",  # a position stocksync never saw
            "SKU-C,nowhere,3,x",  # rejected: not a location of the network
            "SKU-C,w1,-2,x",  # rejected: a count cannot be negative
            "SKU-C,w1,many,x",  # rejected: not a number
            "SKU-A,w1,26,again",  # rejected: the same position twice
            "bad sku!,w1,1,x",  # rejected: not a SKU
            ""]
    snapshot = deployment.tmp / "snapshot.csv.gz"
    snapshot.write_bytes(gzip.compress("\n".join(rows).encode()))

    first = load(deployment, str(snapshot), "--channel", "wms", "--as-of", str(as_of))
    assert first.returncode == 0, first.stderr
    report = first.stdout.splitlines()
    assert report[0].startswith("3 counts sent in ") and report[0].endswith(", 5 rows rejected")
    assert report[1] == "2 positions changed: +22 units, -0 units"
    assert report[2] == "ledger: 3 applied"
    assert "  SKU-A at w1: 9 -> 24 (+15)" in report and "  SKU-B at w2: 0 -> 7 (+7)" in report
    for line, reason in ((5, "'nowhere' is not in the network"), (6, "cannot be negative"),
                         (7, "'many' is not a whole number"), (8, "SKU-A at w1 again"), (9, "is not a SKU")):
        assert any(text.startswith(f"  line {line}: ") and reason in text for text in report), (line, report)
    positions = deployment.latest(deployment.registry.positions.name)
    assert {key: value["figures"]["on_hand"] for key, value in positions.items()} == {
        b"SKU-A|w1": 24, b"SKU-A|s1": 4, b"SKU-B|w2": 7}

    again = load(deployment, str(snapshot), "--channel", "wms", "--as-of", str(as_of))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1] == "0 positions changed: +0 units, -0 units"
    assert "3 changed nothing (already applied" in again.stdout
    def figures(latest: dict[bytes, dict[str, object]]) -> dict[bytes, tuple[object, object]]:
        return {key: (value["figures"], value["version"]) for key, value in latest.items()}

    assert figures(deployment.latest(deployment.registry.positions.name)) == figures(positions)


def test_a_snapshot_without_the_needed_columns_or_channel_is_one_line(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    snapshot = deployment.tmp / "wrong.csv"
    snapshot.write_text("item,store,qty\nSKU-A,w1,3\n")
    wrong_header = load(deployment, str(snapshot), "--channel", "wms", "--no-report")
    assert wrong_header.returncode == 2 and "lacks ['sku', 'location', 'on_hand']" in wrong_header.stderr
    unknown = load(deployment, str(snapshot), "--channel", "erp")
    assert unknown.returncode == 2 and "--channel 'erp' is not in the network" in unknown.stderr
    bad_time = load(deployment, str(snapshot), "--channel", "wms", "--as-of", "yesterday")
    assert bad_time.returncode == 2 and "neither epoch milliseconds nor an ISO 8601 time" in bad_time.stderr
