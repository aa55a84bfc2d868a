"""Which Kafka a development session uses: the configured cluster, else testcontainers (if Docker answers), else
the local jar broker. The CLI and the tests choose here; the worker and the channel client only read the settings
(streams.kafka.cluster)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from streams.kafka.cluster import configured_servers
from streams.security import KafkaConnection
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.dev.local_kafka import LocalKafka


@dataclass
class Cluster:
    """A Kafka cluster in use, and how to let go of it (a no-op for a cluster we did not start)."""

    bootstrap_servers: str
    origin: str  # "environment" | "testcontainers" | "local"
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def stop(self) -> None:
        self._stop()


def docker_answers() -> bool:
    """True when a Docker engine responds (not just a docker client on PATH)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means no engine to use
        return False


def local_broker_dir(settings: Settings, name: str = "default") -> Path:
    return settings.broker_home / "brokers" / name


def start_cluster(settings: Settings, workdir: Path) -> Cluster:
    """Start (or adopt) a cluster for a test session or a demo, in the documented order of preference."""
    if settings.bootstrap_servers:
        return Cluster(settings.bootstrap_servers, "environment")
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        return Cluster(container.get_bootstrap_server(), "testcontainers", container.stop)
    from streams.dev.local_kafka import LocalKafka

    broker = LocalKafka(home=settings.broker_home, workdir=workdir, kafka_version=settings.kafka_version,
                        heap=settings.kafka_heap, start_timeout_s=settings.broker_start_timeout_s).start()
    return Cluster(broker.bootstrap_servers, "local", broker.stop)


LOCAL_BROKERS = ("default", "demo")  # `stocksync broker start`'s, then the one `stocksync demo` started


def running_local_broker(settings: Settings) -> tuple[str, LocalKafka] | None:
    """The local broker running now (`stocksync broker start`'s, else the demo's), by the name of its folder."""
    from streams.dev.local_kafka import LocalKafka

    for name in LOCAL_BROKERS:
        broker = LocalKafka.from_state(settings.broker_home, local_broker_dir(settings, name))
        if broker is not None and broker.running():
            return name, broker
    return None


def bootstrap_servers(settings: Settings) -> str:
    """The cluster the CLI talks to: the configured one, else the running local broker."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    found = running_local_broker(settings)
    if found is not None:
        return found[1].bootstrap_servers
    return configured_servers(settings)  # none: the error names what to set


def connect_or_local(settings: Settings) -> KafkaConnection:
    """The configured cluster, else the running local broker, and how to authenticate to it."""
    return settings.kafka_connection(bootstrap_servers(settings))

