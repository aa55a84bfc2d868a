"""Honest health on a broker of this module's own (it is stopped and started again): /ready says why it is not
ready while Kafka is away, /live stays up (a restart would not help), and the worker comes back by itself. Also:
the worker's web server answers "/" at once and refuses an over-long request line with one warning line."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.dev.local_kafka import LocalKafka
from streams.domain import Kind, Movement
from streams.settings import load_settings
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    settings = load_settings()
    if settings.bootstrap_servers:
        pytest.skip("stops and starts its broker: needs the local one, not a configured cluster")
    broker = LocalKafka(home=settings.broker_home, workdir=tmp_path_factory.mktemp("own-kafka"),
                        kafka_version=settings.kafka_version, heap=settings.kafka_heap,
                        start_timeout_s=settings.broker_start_timeout_s).start()
    yield broker
    broker.stop()


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, dict(json.loads(body)) if body.startswith(b"{") else {}


def test_ready_says_why_while_kafka_is_away_and_the_worker_comes_back(own_broker: LocalKafka, tmp_path: Path,
                                                                      unique: str) -> None:
    deployment = Deployment(own_broker.bootstrap_servers, unique, tmp_path)
    try:
        deployment.apply_network(NETWORK)
        worker = deployment.start_worker("w1")
        assert get(worker.port, "/ready")[1]["reasons"] == []
        assert get(worker.port, "/live") == (200, {"live": True, "reasons": []})

        started = time.monotonic()
        assert get(worker.port, "/")[0] == 200
        assert time.monotonic() - started < 2
        assert get(worker.port, "/skus/" + "x" * 9_000 + "/positions")[0] == 400
        wait_for(lambda: "bad HTTP request refused (400)" in worker.log.read_text(), 10, "the refusal logged")
        assert "Traceback" not in worker.log.read_text()

        own_broker.stop()
        wait_for(lambda: any("Kafka has not answered" in reason
                             for reason in get(worker.port, "/ready")[1].get("reasons", [])), 60,
                 "/ready to say Kafka is away")
        assert get(worker.port, "/ready")[0] == 503
        assert get(worker.port, "/live")[0] == 200  # a restart would not bring Kafka back

        own_broker.start()  # on the same port
        wait_for(lambda: get(worker.port, "/ready")[0] == 200, 180, "the worker ready again by itself")
        at = int(time.time() * 1000) - 1_000
        deployment.send_applied([Movement(Kind.RECEIPT, "after-outage", "wms", "SKU-1", "w1", 4, at)], 120)
    finally:
        deployment.stop_all()
