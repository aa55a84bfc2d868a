"""The workers' HTTP API behind a bearer token and TLS (a CA of the test's own): probes and Prometheus stay open,
everything else needs the token; a request reaching a worker that does not own the SKU is forwarded to the owner
over HTTPS with it; `stocksync query` sends the token and trusts the CA from the settings."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.dev.certificates import CertificateAuthority
from streams.domain import Kind, Movement
from streams.wire.partitioner import sku_partition
from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK

TOKEN = "t0ken-for-the-api-test-" + "x" * 12


@pytest.fixture(scope="module")
def guarded_api(bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Deployment, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("api-access")
    ca = CertificateAuthority(tmp / "ca")
    api = ca.issue("stocksync-api")
    (tmp / "token").write_text(TOKEN + "\n")
    env = {"STOCKSYNC_API_TOKEN_FILE": str(tmp / "token"), "STOCKSYNC_WEB_TLS_CERT_FILE": str(api.cert),
           "STOCKSYNC_WEB_TLS_KEY_FILE": str(api.key), "STOCKSYNC_WEB_CA_FILE": str(ca.pem)}
    deployment = Deployment(bootstrap, f"api-{os.getpid()}", tmp)
    deployment.apply_network(NETWORK)
    deployment.start_worker("w1", env=env)
    deployment.start_worker("w2", env=env)
    wait_for(lambda: all(w.ready() and w.status().get("assigned_partitions") for w in deployment.workers), 90,
             "both workers own partitions")
    yield deployment, env
    deployment.stop_all()


def get(worker: WorkerProcess, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    assert worker.ca_file is not None
    request = urllib.request.Request(f"{worker.url}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=15,
                                    context=ssl.create_default_context(cafile=str(worker.ca_file))) as response:
            return response.status, json.loads(response.read()) if path != "/metrics" else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_probes_and_metrics_are_open_and_everything_else_needs_the_token(
        guarded_api: tuple[Deployment, dict[str, str]]) -> None:
    deployment, _ = guarded_api
    worker = deployment.workers[0]
    for path in ("/ready", "/live", "/metrics"):
        assert get(worker, path, token=None)[0] == 200, path
    for path in ("/skus/SKU-1/positions", "/skus/SKU-1/positions/w1", "/channels/web/ats/SKU-1", "/openapi.json",
                 "/skus/SKU-1/sourcing?channel=web&quantity=1&lat=52&lon=13"):
        status, body = get(worker, path, token=None)
        assert (status, "bearer token" in body["error"]) == (401, True), path
        assert get(worker, path, token="not-" + TOKEN)[0] == 401, path
        assert get(worker, path)[0] == 200, path
    # The API speaks HTTPS only (a plain request is dropped).
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=5)


def test_a_request_to_a_worker_that_does_not_own_the_sku_is_forwarded_with_the_token(
        guarded_api: tuple[Deployment, dict[str, str]]) -> None:
    deployment, _ = guarded_api
    w1, w2 = deployment.workers
    owned_by_w2 = set(w2.status()["assigned_partitions"])
    sku = next(f"SKU-{i:04d}" for i in range(1000) if sku_partition(f"SKU-{i:04d}", deployment.partitions)
               in owned_by_w2)
    deployment.send_applied([Movement(Kind.RECEIPT, f"r-{sku}", "wms", sku, "w1", 9, int(time.time() * 1000))])
    status, body = get(w1, f"/skus/{sku}/positions/w1")  # w1 forwards to w2
    assert (status, body.get("on_hand")) == (200, 9)
    assert "Bearer" not in w1.log.read_text() and TOKEN not in w1.log.read_text() + w2.log.read_text()


def test_the_query_command_sends_the_token_and_trusts_the_ca_from_the_settings(
        guarded_api: tuple[Deployment, dict[str, str]]) -> None:
    deployment, env = guarded_api
    worker = deployment.workers[0]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STOCKSYNC_", "KAFKA_"))}
    base = {**clean, "STOCKSYNC_WEB_PORT": str(worker.port), "STOCKSYNC_WEB_CA_FILE": env["STOCKSYNC_WEB_CA_FILE"],
            "STOCKSYNC_WEB_TLS_CERT_FILE": env["STOCKSYNC_WEB_TLS_CERT_FILE"],
            "STOCKSYNC_WEB_TLS_KEY_FILE": env["STOCKSYNC_WEB_TLS_KEY_FILE"]}

    def query(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streams.cli", "query", "positions", "SKU-Q", "w1"],
                              cwd=repo_root(), capture_output=True, text=True, timeout=60, env={**base, **extra})

    answered = query({"STOCKSYNC_API_TOKEN": TOKEN})
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["location"] == "w1"
    refused = query({})
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "bearer token" in refused.stderr and "HTTP 401" in refused.stderr
    short = query({"STOCKSYNC_API_TOKEN": "short"})
    assert short.returncode == 2 and "at least 16" in short.stderr and "short" not in short.stderr.split(":")[-1]


def test_a_token_file_that_is_missing_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "query", "positions", "SKU-1"], cwd=repo_root(),
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STOCKSYNC_API_TOKEN_FILE": str(tmp_path / "absent")})
    assert done.returncode == 2
    assert done.stderr.strip() == f"stocksync: error: STOCKSYNC_API_TOKEN_FILE: no file at {tmp_path / 'absent'}"
