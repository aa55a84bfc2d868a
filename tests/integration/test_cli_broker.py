"""`stocksync broker start|status|stop` runs a real local broker (skipped when another cluster is configured)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.dev.local_kafka import STATE_FILE
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from tests.integration.conftest import wait_for


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


def test_the_cli_finds_the_demo_s_broker_and_lists_what_the_cluster_holds(bootstrap: str, admin: AdminClient,
                                                                          tmp_path: Path) -> None:
    """With no cluster configured, every command uses the local broker `stocksync demo` started (here: the
    session's broker, recorded where the demo records its own), and `topics list` says what the cluster holds."""
    if "," in bootstrap or not bootstrap.startswith("127.0.0.1:"):
        pytest.skip("the session's cluster is not a single local broker")
    env = {k: v for k, v in os.environ.items() if k not in ("STOCKSYNC_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS")}
    prefix = f"cli-{uuid.uuid4().hex[:8]}"
    env.update(STOCKSYNC_CACHE_DIR=str(tmp_path), STOCKSYNC_TOPIC_PREFIX=prefix, STOCKSYNC_APP_ID=prefix)
    settings = load_settings()
    demo = tmp_path / f"kafka-{settings.kafka_version}" / "brokers" / "demo"
    demo.mkdir(parents=True)
    (demo / STATE_FILE).write_text(json.dumps({  # as the demo's broker records itself: its process and ports
        "pid": os.getpid(), "port": int(bootstrap.rsplit(":", 1)[1]), "controller_port": 0,
        "kafka_version": settings.kafka_version}))

    status = cli("broker", "status", env=env)
    assert status.returncode == 0 and f"running at {bootstrap}" in status.stdout, status.stdout + status.stderr
    assert "started by 'stocksync demo'" in status.stdout
    created = cli("topics", "create", "--channel", "web", env=env)
    assert created.returncode == 0, created.stderr
    admin.create_topics([NewTopic(f"{prefix}.leftover", 1, 1)])[f"{prefix}.leftover"].result(30)
    wait_for(lambda: f"{prefix}.leftover" in admin.list_topics(timeout=10).topics, 30, "the leftover topic listed")
    listed = cli("topics", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t")[-1] for line in listed.stdout.splitlines()}
    partitions = settings.partitions
    assert rows[f"{prefix}.channel.web.sales"] == f"in the cluster: {partitions} partitions"  # found by its name
    assert rows[f"{prefix}.leftover"] == "not in the registry: 1 partitions"
    assert rows[f"{prefix}.positions"] == f"in the cluster: {partitions} partitions"
    missing = cli("topics", "list", "--channel", "app", env=env)
    assert {line.split("\t")[0]: line.split("\t")[-1] for line in missing.stdout.splitlines()}[
        f"{prefix}.channel.app.ats"] == "not in the cluster"
