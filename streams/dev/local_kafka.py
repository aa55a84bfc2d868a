"""A single-node Apache Kafka 4.x (KRaft) run from Apache Kafka's own jars, fetched once with Maven."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from streams.errors import BrokerError
from streams.kafka.clients import new_admin
from streams.security import KafkaConnection, KafkaSecurity

STATE_FILE = "broker.json"
# The audience a token must name for a secured local broker that takes OAUTHBEARER sign-ins.
OAUTH_AUDIENCE = "kafka"
# The users of a secured local broker (besides admin, the broker's own): the workers and the CLI.
SECURE_USERS = ("stocksync",)


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
    """One broker+controller process with its data in `workdir`; `start()` returns once it answers. Alone, or one
    node of a LocalCluster (`node_id`, `voters` and `cluster_id` shared by the cluster's nodes)."""

    home: Path  # holds libs/ (shared by every broker of this Kafka version)
    workdir: Path  # this broker's config, data, logs and state file
    kafka_version: str = "4.1.1"
    heap: str = "512m"
    start_timeout_s: float = 90.0
    port: int = 0
    controller_port: int = 0
    pid: int | None = None
    node_id: int = 1
    voters: str = ""  # the cluster's controller.quorum.voters ("": this node alone)
    cluster_id: str = ""  # the cluster's id, its storage is formatted with ("": a new one)
    replicas: int = 1  # replication of Kafka's internal topics and the default for new topics
    secure: bool = False  # clients authenticate (SASL SCRAM-SHA-512/256 or PLAIN) over TLS (SASL_SSL)
    shared_secrets: Path | None = None  # a cluster's nodes share one certificate and one set of passwords
    mtls_port: int = 0  # secure only: the listener for clients with certificates (SSL, mutual TLS)
    # secure only: an identity provider's JWKS endpoint; OAUTHBEARER sign-ins are then taken too, their tokens
    # verified by Kafka against its keys (the token's `sub` is the principal)
    oauth_jwks_url: str | None = None
    # Listeners reached through a proxy (fault injection): (name, the port this node binds, the port it advertises,
    # where the proxy listens); plaintext. A client bootstrapped at a proxied port talks through the proxy only.
    proxied_listeners: tuple[tuple[str, int, int], ...] = ()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mtls_bootstrap_servers(self) -> str:
        """Secure only: where clients with certificates connect (SSL)."""
        return f"127.0.0.1:{self.mtls_port}"

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
        in_sync = max(1, self.replicas - 1)  # 3 replicas: a write needs 2 of them (min.insync.replicas=2)
        listener = "SASL_SSL" if self.secure else "PLAINTEXT"
        clients = [f"{listener}://127.0.0.1:{self.port}"]
        protocols = [f"{listener}:{listener}", f"CONTROLLER:{listener}"]
        if self.secure:  # and a listener for clients with certificates (mutual TLS)
            self.mtls_port = self.mtls_port if self.mtls_port and _bindable(self.mtls_port) else _free_port()
            clients.append(f"SSL://127.0.0.1:{self.mtls_port}")
            protocols.append("SSL:SSL")
        advertised = list(clients)
        for name, bind, through in self.proxied_listeners:
            clients.append(f"{name}://127.0.0.1:{bind}")
            advertised.append(f"{name}://127.0.0.1:{through}")
            protocols.append(f"{name}:PLAINTEXT")
        config.write_text("\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.voters or f'{self.node_id}@127.0.0.1:{self.controller_port}'}",
            f"listeners={','.join(clients)},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"inter.broker.listener.name={listener}",
            *(self._secure_config() if self.secure else []),
            f"log.dirs={data}",
            f"offsets.topic.replication.factor={self.replicas}",
            "offsets.topic.num.partitions=10",
            f"transaction.state.log.replication.factor={self.replicas}",
            f"transaction.state.log.min.isr={in_sync}",
            f"share.coordinator.state.topic.replication.factor={self.replicas}",
            f"share.coordinator.state.topic.min.isr={in_sync}",
            f"default.replication.factor={self.replicas}",
            f"min.insync.replicas={in_sync}",
            # Groups form at once: the first consumer does not wait for others that are not coming.
            "group.initial.rebalance.delay.ms=0",
            # stocksync creates its topics explicitly (topic registry); a typo must not invent one.
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "log.segment.bytes=67108864",
            "",
        ]))
        return config

    # --- a secured broker: TLS with a certificate made here, SASL users -------------------------------------------
    @property
    def secrets(self) -> Path:
        """Where a secured broker keeps its certificate (ca.pem: what clients trust) and users' passwords."""
        return self.shared_secrets or self.workdir / "secrets"

    def password(self, user: str) -> str:
        """The password of `user` (admin: the broker's own; stocksync: for workers and the CLI), made once."""
        path = self.secrets / f"{user}.password"
        if not path.exists():
            self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text()

    def _certificate(self) -> None:
        """The broker's certificate for 127.0.0.1 and localhost, signed by a CA of the broker's own (ca.pem is what
        clients trust; the CA also signs the client certificates of mutual TLS): PEM files the broker reads."""
        if (self.secrets / "broker-keystore.pem").exists():
            return
        from streams.dev.certificates import CertificateAuthority

        ca = CertificateAuthority(self.secrets)
        broker = ca.issue("broker", server=True)
        (self.secrets / "broker-keystore.pem").write_bytes(  # Kafka's PEM key store: the key, then the chain
            broker.key.read_bytes() + broker.cert.read_bytes() + ca.pem.read_bytes())
        (self.secrets / "broker-keystore.pem").chmod(0o600)

    def client_certificate(self, name: str) -> KafkaSecurity:
        """How a client connects to the mutual-TLS listener as `name` (its certificate's CN, and so its principal
        User:<name>), with a certificate the broker's CA signs now."""
        from streams.dev.certificates import CertificateAuthority

        issued = CertificateAuthority(self.secrets).issue(name, server=False)
        return KafkaSecurity("SSL", cert_file=issued.cert, key_file=issued.key, ca_file=self.secrets / "ca.pem")

    def _secure_config(self) -> list[str]:
        self._certificate()
        admin = self.password("admin")
        users = " ".join(f'user_{u}="{self.password(u)}"' for u in SECURE_USERS)
        return [
            # Every request is authorized; nothing is allowed that no ACL allows ('stocksync acl apply' makes them).
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            "super.users=User:admin",
            # The controllers' listener is secured too: its requests come as admin (plaintext would make them
            # ANONYMOUS, which only a super user ANONYMOUS would let through: anyone on the controller port).
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required username="admin" password="{admin}" user_admin="{admin}";',
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
            + (",OAUTHBEARER" if self.oauth_jwks_url else ""),
            *self._oauth_config(),
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="admin" password="{admin}";',
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram."
            "ScramLoginModule required;",
            "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required username="admin" password="{admin}" {users};',
            "ssl.keystore.type=PEM", f"ssl.keystore.location={self.secrets / 'broker-keystore.pem'}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={self.secrets / 'ca.pem'}",
            # The mutual-TLS listener: a client shows a certificate the CA signed, and its CN is its principal
            # (CN=stocksync is User:stocksync, with the same ACLs as the SCRAM user).
            "listener.name.ssl.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        ]

    def _oauth_config(self) -> list[str]:
        if not self.oauth_jwks_url:
            return []
        return [
            "listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class="
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
            "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config="
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
            f"sasl.oauthbearer.jwks.endpoint.url={self.oauth_jwks_url}",
            f"sasl.oauthbearer.expected.audience={OAUTH_AUDIENCE}",
            # Named, not left to the default: Kafka 4.1's DefaultJwtValidator, made by this handler without a key
            # resolver, checks a token's claims but not its signature (a token signed by anyone passes).
            "sasl.oauthbearer.jwt.validator.class=org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator",
        ]

    def _scram_users(self) -> list[str]:
        """`kafka-storage format` arguments that create the SCRAM users (KRaft keeps them in its metadata)."""
        return [argument for user in ("admin", *SECURE_USERS) for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
                for argument in ("--add-scram", f"{mechanism}=[name={user},password={self.password(user)}]")]

    def start(self) -> LocalKafka:
        """Format storage (first time), launch the JVM and wait until the broker answers metadata requests."""
        proc = self.launch()
        try:
            self.await_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> subprocess.Popen[bytes]:
        """Format storage (first time) and launch the JVM; `await_ready` waits for it (a node of a cluster answers
        only once a majority of its controllers runs)."""
        classpath = self._classpath()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        java = self._java()
        if not (self.workdir / "data" / "meta.properties").exists():
            fmt = subprocess.run(
                # "--cluster-id=": an id may start with "-"
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={self.cluster_id or _cluster_id()}",
                 "-c", str(config), "--ignore-formatted", *(self._scram_users() if self.secure else [])],
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
             # Kafka 4 reads no OAuth endpoint it is not allowed to
             *([f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.oauth_jwks_url}"]
               if self.oauth_jwks_url else []),
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.pid = proc.pid
        self._save_state()
        return proc

    def await_ready(self, proc: subprocess.Popen[bytes]) -> None:
        # librdkafka logs connection refusals while the broker boots; they are expected, so keep it quiet.
        quiet = logging.getLogger("stocksync.broker.boot")
        quiet.setLevel(logging.CRITICAL)
        admin = new_admin(KafkaConnection(self.bootstrap_servers, self.client_security("admin")), logger=quiet,
                          error_cb=lambda error: None)
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

    def client_security(self, user: str = "stocksync") -> KafkaSecurity:
        """How a client connects to this broker as `user` (plaintext when it is not secured)."""
        if not self.secure:
            return KafkaSecurity()
        return KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", user, self.password(user), self.secrets / "ca.pem")

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

    def kill(self) -> None:
        """SIGKILL: the node dies as in a crash (no controlled shutdown)."""
        if self.pid is not None and _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            while _alive(self.pid):
                time.sleep(0.05)
        self.pid = None
        self._save_state()

    def _save_state(self) -> None:
        (self.workdir / STATE_FILE).write_text(json.dumps(
            {"pid": self.pid, "port": self.port, "controller_port": self.controller_port,
             "kafka_version": self.kafka_version, "node_id": self.node_id, "voters": self.voters,
             "cluster_id": self.cluster_id, "replicas": self.replicas, "secure": self.secure,
             "shared_secrets": str(self.shared_secrets) if self.shared_secrets else None,
             "mtls_port": self.mtls_port, "proxied_listeners": self.proxied_listeners}))

    @classmethod
    def from_state(cls, home: Path, workdir: Path) -> LocalKafka | None:
        """The broker a previous `start()` left in workdir (running, or stopped with its ports), if any."""
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(home=home, workdir=workdir, kafka_version=state["kafka_version"], port=state["port"],
                   controller_port=state["controller_port"], pid=state["pid"], node_id=state.get("node_id", 1),
                   voters=state.get("voters", ""), cluster_id=state.get("cluster_id", ""),
                   replicas=state.get("replicas", 1), secure=state.get("secure", False),
                   shared_secrets=Path(state["shared_secrets"]) if state.get("shared_secrets") else None,
                   mtls_port=state.get("mtls_port", 0),
                   proxied_listeners=tuple((str(n), int(b), int(t)) for n, b, t in state.get("proxied_listeners", ())))


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



@dataclass
class LocalCluster:
    """`size` broker+controller nodes (KRaft, a static quorum of all of them) with their data in `workdir`/node-N;
    Kafka's internal topics and new topics get `size` replicas and min.insync.replicas = size - 1. Each node keeps
    its ports when it is killed and started again."""

    home: Path
    workdir: Path
    size: int = 3
    kafka_version: str = "4.1.1"
    heap: str = "512m"
    start_timeout_s: float = 180.0
    secure: bool = False  # every node as LocalKafka(secure=True), sharing the certificate and the users
    # Listeners of every node reached through a proxy, one set per "slot" (a client bootstraps at one slot's
    # ports and all its connections pass its slot's proxies): (listener name, node id) -> (bind, proxy) ports.
    proxy_slots: int = 0
    nodes: list[LocalKafka] = field(default_factory=list)
    proxied: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def start(self) -> LocalCluster:
        if not self.nodes:
            ports = [(_free_port(), _free_port()) for _ in range(self.size)]
            voters = ",".join(f"{i + 1}@127.0.0.1:{controller}" for i, (_, controller) in enumerate(ports))
            cluster_id = _cluster_id()
            if self.proxy_slots and self.secure:
                raise BrokerError("proxied listeners are plaintext: a secured cluster has none")
            self.proxied = {(f"SLOT{slot}", i + 1): (_free_port(), _free_port())
                            for slot in range(self.proxy_slots) for i in range(self.size)}
            self.nodes = [LocalKafka(home=self.home, workdir=self.workdir / f"node-{i + 1}",
                                     kafka_version=self.kafka_version, heap=self.heap,
                                     start_timeout_s=self.start_timeout_s, port=port, controller_port=controller,
                                     node_id=i + 1, voters=voters, cluster_id=cluster_id, replicas=self.size,
                                     secure=self.secure,
                                     shared_secrets=self.workdir / "secrets" if self.secure else None,
                                     proxied_listeners=tuple((name, bind, through) for (name, node), (bind, through)
                                                             in sorted(self.proxied.items()) if node == i + 1))
                          for i, (port, controller) in enumerate(ports)]
        launched = [(node, node.launch()) for node in self.nodes if not node.running()]
        try:
            for node, proc in launched:
                node.await_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def slot_bootstrap_servers(self, slot: int) -> str:
        """Where a client of proxy slot `slot` bootstraps: every node's proxied port of that slot."""
        return ",".join(f"127.0.0.1:{self.proxied[(f'SLOT{slot}', node.node_id)][1]}" for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def client_security(self, user: str = "stocksync") -> KafkaSecurity:
        """How a client connects to the cluster as `user` (the nodes share their users and certificate)."""
        return self.nodes[0].client_security(user)

    @property
    def mtls_bootstrap_servers(self) -> str:
        return ",".join(node.mtls_bootstrap_servers for node in self.nodes)

    def start_node(self, node_id: int) -> None:
        """Start a node that was stopped or killed again, on its ports, and wait until it answers."""
        node = self.node(node_id)
        node.await_ready(node.launch())

    def stop(self) -> None:
        """Stop every node at once (one by one, the last ones would wait for a quorum that is gone)."""
        threads = [threading.Thread(target=node.stop) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @classmethod
    def from_state(cls, home: Path, workdir: Path) -> LocalCluster | None:
        """The cluster a previous `start()` left in workdir (running, or stopped with its ports), if any."""
        nodes = []
        for n in range(1, 100):
            node = LocalKafka.from_state(home, workdir / f"node-{n}")
            if node is None:
                break
            nodes.append(node)
        return cls(home=home, workdir=workdir, size=len(nodes), kafka_version=nodes[0].kafka_version,
                   secure=nodes[0].secure, nodes=nodes) if nodes else None
