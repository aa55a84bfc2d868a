"""`stocksync broker start|status|stop` runs a real local broker (skipped when another cluster is configured)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)


@pytest.mark.skipif(bool(load_settings().bootstrap_servers), reason="a cluster is configured: no local broker")
def test_broker_cli_lifecycle(tmp_path: Path) -> None:
    settings = load_settings()
    cache = tmp_path / "cache"
    # Reuse the jars the session broker already fetched (a new cache would fetch them again with Maven).
    (cache / f"kafka-{settings.kafka_version}").mkdir(parents=True)
    (cache / f"kafka-{settings.kafka_version}" / "libs").symlink_to(settings.broker_home / "libs")
    env = {**os.environ, "STOCKSYNC_CACHE_DIR": str(cache)}
    try:
        started = cli("broker", "start", env=env)
        assert started.returncode == 0, started.stderr
        servers = started.stdout.strip()
        assert AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10).brokers

        status = cli("broker", "status", env=env)
        assert status.returncode == 0 and f"running at {servers}" in status.stdout
        again = cli("broker", "start", env=env)  # idempotent: reports the running broker
        assert again.stdout.strip() == servers
        created = cli("topics", "create", "--channel", "web", env=env)
        expected = len(TopicRegistry(load_settings()).all(["web"]))  # the core topics and web's
        assert created.returncode == 0 and created.stdout.startswith(f"{expected} created"), created.stderr
    finally:
        stopped = cli("broker", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli("broker", "status", env=env).returncode == 1
    try:  # started again: the same address (clients reconnect) and the same data
        restarted = cli("broker", "start", env=env)
        assert restarted.returncode == 0 and restarted.stdout.strip() == servers, restarted.stderr
        topics = AdminClient({"bootstrap.servers": servers}).list_topics(timeout=30).topics
        assert load_settings().topic_prefix + ".channel.web.sales" in topics
    finally:
        assert cli("broker", "stop", env=env).returncode == 0
