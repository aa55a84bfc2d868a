"""Creates the registry's topics idempotently and reports any existing topic that differs from it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.errors import BrokerError, StocksyncError, TopicMismatch
from streams.kafka.admin_api import ConfigResource, ConsumerGroupTopicPartitions, NewTopic
from streams.kafka.clients import (
    AdminClient,
    KafkaException,
    TopicPartition,
    access_refused,
    explain_failure,
    new_admin,
)
from streams.kafka.topics import PINNED_CONFIGS, TopicSpec
from streams.security import KafkaConnection


@dataclass
class EnsureReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def _topics(admin: AdminClient, timeout_s: float) -> dict[str, Any]:
    """The cluster's topics. Asked in short rounds, so that refused credentials or a failed TLS handshake end the
    wait at once (with what to fix) instead of after the whole timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            topics: dict[str, Any] = admin.list_topics(timeout=max(0.1, min(2.0, deadline - time.monotonic()))).topics
            return topics
        except KafkaException as exc:
            admin.poll(0)  # delivers the error callbacks that say why
            if access_refused() or time.monotonic() >= deadline:
                raise BrokerError(f"cannot list topics: {explain_failure(exc)}") from None


def ensure_topics(admin: AdminClient, specs: Sequence[TopicSpec], replication_factor: int = 1,
                  timeout_s: float = 30.0) -> EnsureReport:
    """Create missing topics with their configs; raise TopicMismatch naming every existing topic that differs."""
    report = EnsureReport()
    existing = _topics(admin, timeout_s)
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=replication_factor,
                      config=dict(s.config)) for s in missing], operation_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result()
                report.created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another worker won the race: check it below
                    raise BrokerError(f"cannot create topic {name}: {explain_failure(exc, admin)}") from None
        existing = _await_metadata(admin, [spec.name for spec in specs], timeout_s)
    created = set(report.created)
    to_check = [spec for spec in specs if spec.name not in created]
    report.existing = [spec.name for spec in to_check]
    problems = [_partition_problem(spec, len(existing[spec.name].partitions)) for spec in to_check]
    problems += _config_problems(admin, to_check, timeout_s)
    problems = [p for p in problems if p]
    if problems:
        raise TopicMismatch("; ".join(problems))
    return report


def _await_metadata(admin: AdminClient, names: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Topic metadata once every name is visible (a new topic reaches the metadata cache a moment later)."""
    deadline = time.monotonic() + timeout_s
    while True:
        topics: dict[str, Any] = admin.list_topics(timeout=timeout_s).topics
        absent = [name for name in names if name not in topics or not topics[name].partitions]
        if not absent:
            return topics
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not visible after creation: {', '.join(absent)}")
        time.sleep(0.1)


def _partition_problem(spec: TopicSpec, actual: int) -> str:
    if actual != spec.partitions:
        return f"{spec.name} has {actual} partitions, the registry says {spec.partitions}"
    return ""


def _config_problems(admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> list[str]:
    pinned = [spec for spec in specs if any(key in spec.config for key in PINNED_CONFIGS)]
    if not pinned:
        return []
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in pinned],
                                     request_timeout=timeout_s)
    problems = []
    by_name = {spec.name: spec for spec in pinned}
    for resource, future in futures.items():
        spec = by_name[resource.name]
        actual = future.result()
        for key in PINNED_CONFIGS:
            want = spec.config.get(key)
            have = actual[key].value if key in actual else None
            if want is not None and have != want:
                problems.append(f"{spec.name} has {key}={have}, the registry says {want}")
    return problems


def await_inputs_read(admin_kafka: KafkaConnection, group: str, ends: dict[tuple[str, int], int],
                      timeout_s: float) -> None:
    """Wait until the workers' input group has committed (read and applied) every offset up to `ends`."""
    admin = new_admin(admin_kafka)
    deadline = time.monotonic() + timeout_s
    wanted = [TopicPartition(topic, partition) for (topic, partition), end in ends.items() if end > 0]
    while wanted:
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)],
                                                    request_timeout=10)
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in futures[group].result().topic_partitions if tp.error is None}
        wanted = [tp for tp in wanted if committed.get((tp.topic, tp.partition), -1) < ends[(tp.topic, tp.partition)]]
        if not wanted:
            return
        if time.monotonic() > deadline:
            raise StocksyncError(f"the workers had not read every count after {timeout_s:.0f} s "
                                 f"({len(wanted)} partitions behind): are they running?")
        time.sleep(0.5)
