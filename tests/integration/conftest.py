"""One real Kafka broker for the whole test session: KAFKA_BOOTSTRAP_SERVERS, testcontainers, or the local jars."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.dev.cluster import Cluster, start_cluster
from streams.dev.local_kafka import LocalKafka
from streams.kafka.clients import new_admin, new_consumer, new_producer
from streams.settings import load_settings
from tests.integration.identity_provider import IdentityProvider

T = TypeVar("T")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = load_settings()
    cluster = start_cluster(settings, tmp_path_factory.mktemp("kafka"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka: Cluster) -> str:
    return kafka.bootstrap_servers


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> AdminClient:
    return new_admin(bootstrap)


@pytest.fixture(scope="session")
def identity_provider() -> Iterator[IdentityProvider]:
    """An OAuth identity provider whose clients are the secured broker's OAUTHBEARER users: stocksync (the
    workers' principal) and admin."""
    provider = IdentityProvider({"stocksync": "stocksync-client-secret", "admin": "admin-client-secret"}).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory, identity_provider: IdentityProvider) -> Iterator[LocalKafka]:
    """A secured broker of its own (started only by the tests that ask for it): SASL_SSL with a certificate made
    by the project, SCRAM users, OAUTHBEARER sign-ins verified against the identity provider's keys, and the
    StandardAuthorizer allowing nothing that no ACL allows."""
    settings = load_settings()
    broker = LocalKafka(home=settings.broker_home, workdir=tmp_path_factory.mktemp("secured-broker"),
                        kafka_version=settings.kafka_version, heap="384m", secure=True,
                        oauth_jwks_url=identity_provider.jwks_url).start()
    yield broker
    broker.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keep each phase's report on the test item, so that fixtures can tell at teardown whether it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def deployment(bootstrap: str, unique: str, tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A stocksync deployment with its own topics on the session broker; its workers stop at the end (and,
    when the test failed, the end of each worker's log is printed with the test's output)."""
    from tests.integration.harness import Deployment

    deployment = Deployment(bootstrap, unique, tmp_path)
    yield deployment
    deployment.stop_all()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for worker in deployment.workers:
            lines = worker.log.read_text(errors="replace").splitlines()[-60:]
            print(f"--- the last lines of worker {worker.name}'s log ---", *lines, sep="\n")


@pytest.fixture
def make_topic(admin: AdminClient, unique: str) -> Callable[..., str]:
    """Create a topic named after the test; returns its name."""

    def make(suffix: str, partitions: int = 3, config: dict[str, str] | None = None) -> str:
        name = f"t-{unique}-{suffix}"
        for future in admin.create_topics([NewTopic(name, partitions, 1, config=config or {})]).values():
            future.result()
        return name

    return make


def producer(bootstrap: str, **extra: object) -> Producer:
    """A producer with the project's client settings (what every channel-side client uses)."""
    return new_producer(bootstrap, **{"linger.ms": 5, **extra})


def consume(bootstrap: str, topic: str, until: Callable[[list[T]], bool], decode: Callable[..., T],
            timeout_s: float = 60.0, group: str | None = None,
            check: Callable[[], None] = lambda: None) -> list[T]:
    """Read `topic` from the start until `until(records)` holds; fail with what was seen on timeout.

    `check` runs between polls and may raise (e.g. when the worker under test has died)."""
    consumer = new_consumer(bootstrap, group or f"reader-{time.monotonic_ns()}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    records: list[T] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s reading {topic}; saw {len(records)}: "
                                     f"{records[-5:]}")
            check()
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            records.append(decode(message))
    finally:
        consumer.close()
    return records


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll `condition` until it holds (the awaited condition, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, avoid: Iterable[int] = ()) -> int:
    """The first of `count` consecutive free ports (the demo's workers listen on a port each, from its web port
    on), none of them in `avoid`."""
    taken = set(avoid)
    while True:
        first = free_port()
        wanted = range(first, first + count)
        if taken & set(wanted) or wanted[-1] > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in wanted:
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return first


def running(proc: subprocess.Popen[bytes], log: Path) -> Callable[[], None]:
    """A `check` for consume(): fails at once, with the log's tail, if the process under test exited."""

    def check() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {log.read_text()[-3000:]}")

    return check


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
