"""The stream pipeline on the real broker, checked against the domain replaying the ledger."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK, retail_workload


@pytest.fixture
def deployment(bootstrap: str, unique: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    deployment = Deployment(bootstrap, unique, tmp_path)
    yield deployment
    deployment.stop_all()


def settle(deployment: Deployment, timeout_s: float = 300) -> None:
    """Wait until every input is consumed and committed, and no reservation that is due is still open."""

    def settled() -> bool:
        if not deployment.inputs_consumed():
            return False
        stocks, _ = deployment.replay_ledger()
        now = int(time.time() * 1000)
        return not any(r.expires_at <= now - 1_000 for s in stocks.values() for r in s.reservations.values())

    wait_for(settled, timeout_s, "the pipeline to settle", interval_s=1.0)


def test_random_workload_equals_domain_replay(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    movements = retail_workload(50_000, skus=300, seed=11, expiring_after_ms=20_000)
    started = time.monotonic()
    deployment.send(movements, pack=25)
    settle(deployment)
    elapsed = time.monotonic() - started

    stocks, history = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)
    # Every distinct movement sent is in the ledger exactly once (re-sends were duplicates, not re-applied).
    ledgered = Counter(f"{e['channel']}:{e['event_id']}" for e in history)
    assert set(deployment.sent) <= set(ledgered)
    statuses = Counter(e["status"] for e in history)
    kinds = Counter(e["kind"] for e in history)
    assert statuses["absorbed"] > 0 and statuses["refused"] > 0 and kinds["reservation_expired"] > 0
    print(f"\n50k workload: {len(movements)} sent in {elapsed:.1f}s; statuses {dict(statuses)}")
