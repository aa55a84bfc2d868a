"""The orders benchmark's short form on the session broker: every order offered is decided, and afterwards every
position's reserved units are exactly the accepted orders' lines (no tentative hold left behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import repo_root


def test_the_orders_benchmark_decides_every_order_and_leaves_no_hold_behind(bootstrap: str) -> None:
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": bootstrap}
    done = subprocess.run([sys.executable, "-m", "bench.orders", "--rate", "20", "--seconds", "3", "--skus", "40",
                           "--units", "30"], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["offered"]["orders"] >= 40
    assert result["decided"] == result["offered"]["orders"] and result["undecided"] == 0
    assert result["accepted"] > 0 and result["parcels_per_accepted_order"] >= 1
    assert result["holds_not_matching_accepted_orders"] == {}
    assert result["decision_latency_ms"]["p50"] > 0
