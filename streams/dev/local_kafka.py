"""A single-node Apache Kafka 4.x (KRaft) run from Apache Kafka's own jars, fetched once with Maven."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from streams.errors import BrokerError

STATE_FILE = "broker.json"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as `kafka-storage random-uuid`)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _require(tool: str, what: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"'{tool}' not found on PATH: install {what} to run the local Kafka broker")
    return path


def maven_dependencies(pom: Path, libs: Path, properties: dict[str, str], what: str) -> Path:
    """Copy the runtime dependencies `pom` declares into `libs` once with Maven; later calls reuse them."""
    marker = libs / ".complete"
    if marker.exists():
        return libs
    _require("java", "Java 17 or newer (e.g. openjdk-17-jre-headless)")
    mvn = _require("mvn", "Apache Maven (e.g. the 'maven' package)")
    partial = libs.with_name(f"{libs.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [mvn, "-B", "-q", "-f", str(pom), *(f"-D{name}={value}" for name, value in properties.items()),
           "dependency:copy-dependencies", f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise BrokerError(f"Maven could not fetch {what}: {' | '.join(tail)}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    marker.touch()
    return libs


def fetch_jars(home: Path, kafka_version: str) -> Path:
    """Apache Kafka's jars and their dependencies in home/libs, fetched once."""
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(resources.files("streams.dev").joinpath("kafka-pom.xml").read_text())
    return maven_dependencies(pom, home / "libs", {"kafka.version": kafka_version}, f"Kafka {kafka_version}")


@dataclass
class LocalKafka:
    """One broker+controller process with its data in `workdir`; `start()` returns once it answers."""

    home: Path  # holds libs/ (shared by every broker of this Kafka version)
    workdir: Path  # this broker's config, data, logs and state file
    kafka_version: str = "4.1.1"
    heap: str = "512m"
    start_timeout_s: float = 90.0
    port: int = 0
    controller_port: int = 0
    pid: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self) -> str:
        return _require("java", "Java 17 or newer (e.g. openjdk-17-jre-headless)")

    def _classpath(self) -> str:
        return str(fetch_jars(self.home, self.kafka_version) / "*")

    def _write_config(self) -> Path:
        # A broker started again keeps its ports (clients and workers reconnect), unless another process took one.
        self.port = self.port if self.port and _bindable(self.port) else _free_port()
        self.controller_port = self.controller_port if self.controller_port and _bindable(self.controller_port) \
            else _free_port()
        data = self.workdir / "data"
        config = self.workdir / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Groups form at once: the first consumer does not wait for others that are not coming.
            "group.initial.rebalance.delay.ms=0",
            # stocksync creates its topics explicitly (topic registry); a typo must not invent one.
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "log.segment.bytes=67108864",
            "",
        ]))
        return config

    def start(self) -> LocalKafka:
        """Format storage (first time), launch the JVM and wait until the broker answers metadata requests."""
        classpath = self._classpath()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        java = self._java()
        if not (self.workdir / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                # "--cluster-id=": an id may start with "-"
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}",
                 "-c", str(config), "--ignore-formatted"],
                capture_output=True, text=True)
            if fmt.returncode != 0:
                raise BrokerError(f"kafka storage format failed: {fmt.stderr.strip().splitlines()[-1:]}")
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        log4j = resources.files("streams.dev").joinpath("log4j2.yaml")
        out = open(logs / "stdout.log", "ab")
        proc = subprocess.Popen(
            [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
             f"-Dkafka.logs.dir={logs}", f"-Dlog4j2.configurationFile={log4j}",
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.pid = proc.pid
        self._save_state()
        try:
            self._await_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _await_ready(self, proc: subprocess.Popen[bytes]) -> None:
        from confluent_kafka.admin import AdminClient

        # librdkafka logs connection refusals while the broker boots; they are expected, so keep it quiet.
        quiet = logging.getLogger("stocksync.broker.boot")
        quiet.setLevel(logging.CRITICAL)
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": quiet})  # type: ignore[dict-item]
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(f"Kafka exited with code {proc.returncode} during start-up: "
                                  f"{self._log_tail()}")
            try:
                metadata = admin.list_topics(timeout=1.0)
                if metadata.brokers and metadata.controller_id >= 0:
                    return
            except Exception:  # noqa: BLE001 - not ready yet; the deadline bounds the wait
                pass
            time.sleep(0.2)
        raise BrokerError(f"Kafka did not answer on {self.bootstrap_servers} within "
                          f"{self.start_timeout_s:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        lines: list[str] = []
        for name in ("stdout.log", "server.log"):
            path = self.workdir / "logs" / name
            if path.exists():
                lines += [line for line in path.read_text(errors="replace").splitlines() if "ERROR" in line
                          or "Exception" in line]
        return lines[-1] if lines else f"see {self.workdir / 'logs'}"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (Kafka's controlled shutdown), then SIGKILL if it does not exit in time."""
        if self.pid is None:
            return
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        self._save_state()  # its ports, for the next start

    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def _save_state(self) -> None:
        (self.workdir / STATE_FILE).write_text(json.dumps(
            {"pid": self.pid, "port": self.port, "controller_port": self.controller_port,
             "kafka_version": self.kafka_version}))

    @classmethod
    def from_state(cls, home: Path, workdir: Path) -> LocalKafka | None:
        """The broker a previous `start()` left in workdir (running, or stopped with its ports), if any."""
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(home=home, workdir=workdir, kafka_version=state["kafka_version"], port=state["port"],
                   controller_port=state["controller_port"], pid=state["pid"])


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child so it does not linger as a zombie
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

