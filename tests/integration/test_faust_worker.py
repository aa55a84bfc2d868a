"""faust on the real broker: a table kept by a worker survives that worker's restart (recovered from its changelog)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.conftest import consume, free_port, producer, repo_root, running, wait_for


def _quietly(condition: Callable[[], bool]) -> Callable[[], bool]:
    """A condition whose timeout (AssertionError) counts as 'not yet'."""

    def check() -> bool:
        try:
            return condition()
        except AssertionError as exc:
            if "process exited" in str(exc):
                raise
            return False

    return check


@contextmanager
def counter_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "tests.integration.apps.counter", "worker",
                                 "-l", "warn"], env=env, cwd=repo_root(), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_table_survives_worker_restart(bootstrap: str, make_topic: Callable[..., str], unique: str,
                                       tmp_path: Path) -> None:
    source, sink = make_topic("in", 2), make_topic("out", 2)
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": bootstrap, "STOCKSYNC_APP_ID": f"counter-{unique}",
           "STOCKSYNC_STORE": "memory://", "STOCKSYNC_PARTITIONS": "2", "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": "6",
           "STOCKSYNC_WEB_PORT": str(free_port()), "STOCKSYNC_DATA_DIR": str(tmp_path / "data"),
           "COUNTER_IN": source, "COUNTER_OUT": sink, "COUNTER_TABLE": "counts"}
    decode = lambda m: (m.key(), int(m.value()))  # noqa: E731
    prod = producer(bootstrap)

    def send(key: bytes, times: int) -> None:
        for _ in range(times):
            prod.produce(source, key=key, value=b"x")
        assert prod.flush(30) == 0

    log1, log2 = tmp_path / "worker1.log", tmp_path / "worker2.log"

    def await_worker(worker: subprocess.Popen[bytes], log: Path, probe: bytes) -> None:
        # Plain faust can skip a message produced while it is still joining (stocksync's worker reads its inputs
        # itself, see streams.worker.flow.reader): produce once the worker answers a probe.
        def answered() -> bool:
            send(probe, 1)
            return bool(consume(bootstrap, sink, lambda got: any(k == probe for k, _ in got), decode, 3,
                                check=running(worker, log)))

        wait_for(_quietly(answered), 90, "the worker to answer a probe", interval_s=0.5)

    with counter_worker(env, log1) as first:
        await_worker(first, log1, b"probe-1")
        send(b"a", 20)
        send(b"b", 5)
        seen = consume(bootstrap, sink, lambda got: (b"a", 20) in got and (b"b", 5) in got, decode, 90,
                       check=running(first, log1))
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, log1.read_text()[-2000:]
    assert max(n for k, n in seen if k == b"a") == 20

    with counter_worker(env, log2) as second:
        await_worker(second, log2, b"probe-2")
        send(b"a", 7)
        seen = consume(bootstrap, sink, lambda got: (b"a", 27) in got, decode, 90, check=running(second, log2))
    # The second worker started from the changelog (20), not from zero, and counted nothing twice.
    assert [n for k, n in seen if k == b"a"] == list(range(1, 28))
