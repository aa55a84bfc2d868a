"""Shared test helpers: unique names, so tests on the one session broker never see each other's data, and the
three-node cluster of the fault tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from streams.dev.local_kafka import LocalCluster
from streams.settings import load_settings


@pytest.fixture
def unique() -> str:
    """A short id to make topic, group and app names unique to one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local three-node KRaft cluster for one test module (its tests kill and restart its nodes)."""
    settings = load_settings()
    if settings.bootstrap_servers:
        pytest.skip("kills and restarts its nodes: needs the local jars, not a configured cluster")
    cluster = LocalCluster(home=settings.broker_home, workdir=tmp_path_factory.mktemp("cluster"), size=3,
                           kafka_version=settings.kafka_version, heap="384m").start()
    yield cluster
    cluster.stop()
