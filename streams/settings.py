"""Typed settings read from the environment (prefix STOCKSYNC_), with defaults for the local broker."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.api_access import MIN_API_TOKEN_CHARS, ApiAccess
from streams.errors import ConfigError
from streams.security import KafkaConnection, KafkaSecurity, OAuthClient, passed_through

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stocksync"
DEFAULT_MAX_RECORD_BYTES = 256 * 1024


class Settings(BaseSettings):
    """Every knob of stocksync; each field is read from STOCKSYNC_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="STOCKSYNC_", frozen=True, extra="ignore")

    # Where Kafka is, and how to connect to it: the same for the workers, the CLI and channel clients.
    bootstrap_servers: str = Field(default="", description=(
        "the Kafka cluster, host:port[,host:port...] (KAFKA_BOOTSTRAP_SERVERS works too); empty: the CLI, and a "
        "worker it runs, use the local broker that stocksync broker start or the demo started; a channel client "
        "says it is not set"))
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how to connect to Kafka: TLS (SSL), SASL, or both")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        default="SCRAM-SHA-512", description="the SASL mechanism (OAUTHBEARER: tokens from STOCKSYNC_OAUTH_*)")
    sasl_username: str | None = Field(default=None, description="the SASL user")
    sasl_password: SecretStr | None = Field(default=None, description="the SASL password (better: the file below)")
    sasl_password_file: Path | None = Field(default=None, description=(
        "a file holding the SASL password (a mounted Kubernetes Secret)"))
    ssl_ca_file: Path | None = Field(default=None, description=(
        "the CAs that signed the brokers' certificates, PEM (default: the system's)"))
    ssl_cert_file: Path | None = Field(default=None, description="a client certificate for mutual TLS, PEM")
    ssl_key_file: Path | None = Field(default=None, description="the client certificate's private key, PEM")
    # OAUTHBEARER: an OAuth 2.0 client of the identity provider's token endpoint (client-credentials grant).
    oauth_token_url: str | None = Field(default=None, pattern=r"^https?://\S+$", description=(
        "the identity provider's token endpoint (OAUTHBEARER), e.g. https://idp/realms/kafka/protocol/openid-connect"
        "/token"))
    oauth_client_id: str | None = Field(default=None, description="the OAuth client this deployment signs in as")
    oauth_client_secret: SecretStr | None = Field(default=None, description=(
        "the OAuth client's secret (better: the file below)"))
    oauth_client_secret_file: Path | None = Field(default=None, description=(
        "a file holding the OAuth client's secret (a mounted Kubernetes Secret)"))
    oauth_scope: str | None = Field(default=None, description="the scope to ask tokens for (the provider's default)")
    librdkafka: dict[str, str | int | float | bool] = Field(default_factory=dict, description=(
        "other librdkafka settings for every confluent-kafka client (channel clients, the CLI, a worker's "
        "transactions), as a JSON object, e.g. {\"client.rack\": \"eu-west-1a\"} or an OAUTHBEARER sign-in; those "
        "stocksync sets itself (acks, idempotence, isolation, group and transactional ids) are refused; a worker's "
        "aiokafka readers take those aiokafka also knows (dots as underscores: client.rack, request.timeout.ms)"))
    librdkafka_file: Path | None = Field(default=None, description=(
        "a JSON file of more such settings, e.g. secrets of a sign-in (a mounted Kubernetes Secret); a setting "
        "may be in one of the two only"))
    # A Confluent-compatible Schema Registry: with a URL, the records channels read and write are framed as its
    # serializers frame them (magic byte, schema id, body); without, Avro single-object encoding (no registry).
    schema_registry_url: str | None = Field(default=None, pattern=r"^(https?|mock)://\S+$", description=(
        "a Confluent-compatible Schema Registry (https://host:port; mock://name is confluent-kafka's in-process "
        "registry for a channel's own tests): channel-facing records are then written in its wire format, "
        "registered under their record names (published.json), and read in either format"))
    schema_registry_user: str | None = Field(default=None, description="the registry's basic-auth user")
    schema_registry_password: SecretStr | None = Field(default=None, description=(
        "the registry's basic-auth password (better: the file below)"))
    schema_registry_password_file: Path | None = Field(default=None, description=(
        "a file holding the registry's basic-auth password"))
    schema_registry_ca_file: Path | None = Field(default=None, description=(
        "the CAs that signed the registry's certificate, PEM (default: the system's)"))
    schema_registry_config: dict[str, str | int | float | bool] = Field(default_factory=dict, description=(
        "other settings of confluent-kafka's SchemaRegistryClient as a JSON object, e.g. "
        "{\"bearer.auth.credentials.source\": \"OAUTHBEARER\", ...}"))
    schema_registry_auto_register: bool = Field(default=True, description=(
        "register stocksync's schemas (and set their subjects' compatibility) on first use; false: only look "
        "them up, as registered beforehand by 'stocksync schemas register'"))
    # Who is who on a cluster with ACLs ('stocksync acl apply'): a principal is TYPE:NAME, as the brokers name it.
    workers_principal: str = Field(default="User:stocksync", pattern=r"^[A-Za-z]+:.+$", description=(
        "the principal the workers connect as (stocksync acl)"))
    admin_principal: str = Field(default="User:admin", pattern=r"^[A-Za-z]+:.+$", description=(
        "the principal operators connect as (stocksync acl)"))
    channel_principal: str = Field(default="User:channel-{channel}", pattern=r"^[A-Za-z]+:.*\{channel\}.*$",
                                   description="each channel's principal, {channel} standing for its id")
    topic_prefix: str = Field(default="stocksync", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$",
                              description="the first part of every topic name")
    # Every input topic has the same partition count, so all positions of a SKU meet on one worker.
    partitions: int = Field(default=6, ge=1, le=10_000, description="partitions of every SKU-keyed topic")
    replication_factor: int = Field(default=1, ge=1, le=10, description="replicas of every topic stocksync creates")
    ledger_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=60_000, description=(
        "how long the ledger keeps applied movements (30 days)"))
    deadletter_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=60_000, description=(
        "how long the dead-letter topic keeps bad input (30 days)"))

    # The worker.
    app_id: str = Field(default="stocksync", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$", description=(
        "the workers' app id: their consumer group, transactional ids and changelog names; input offsets are "
        "committed to the group APP_ID.inputs"))
    store: Literal["rocksdb://", "memory://"] = Field(default="rocksdb://", description=(
        "where a worker keeps its table partitions: RocksDB on disk, or memory (tests, demos)"))
    # faust joins its group after about half of it. 6 s is the least a broker allows by default
    # (group.min.session.timeout.ms); heartbeats come from faust's consumer thread, so a long batch does not miss them.
    broker_session_timeout_s: float = Field(default=6.0, gt=0, description=(
        "a killed worker is noticed after this, and its partitions move"))
    standby_replicas: int = Field(default=1, ge=0, le=10, description=(
        "workers besides its owner that keep a warm copy of each table partition (RocksDB store), so that one of "
        "them takes it over without reading its whole changelog first"))
    web_port: int = Field(default=6066, ge=0, le=65535, description=(
        "the worker's HTTP port: /ready, /live, /metrics and the query API"))
    web_host: str = Field(default="127.0.0.1", description="the address the worker's HTTP server binds")
    worker_processes: str = Field(default="1", pattern=r"^(auto|[1-9][0-9]{0,2})$", description=(
        "worker processes `stocksync worker` runs on this host (auto: one per core), each its own group member "
        "with its own state directory (DATA_DIR/process-N) and HTTP port (WEB_PORT+N); with more than one, a "
        "parent process starts, stops and restarts them and answers on WEB_PORT for all"))
    advertised_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$", description=(
        "how other workers reach this one, to forward a query to the SKU's owner (default: "
        "http://WEB_HOST:WEB_PORT)"))
    # The workers share the API's guard: a request reaching a worker that does not own the SKU is forwarded with it.
    api_token: SecretStr | None = Field(default=None, description=(
        "a bearer token every API request needs but /ready, /live and /metrics (better: the file below)"))
    api_token_file: Path | None = Field(default=None, description="a file holding the API's bearer token")
    web_tls_cert_file: Path | None = Field(default=None, description=(
        "the API's certificate (chain), PEM: the API then speaks HTTPS only"))
    web_tls_key_file: Path | None = Field(default=None, description="the API certificate's private key, PEM")
    web_ca_file: Path | None = Field(default=None, description=(
        "the CA that signed the workers' API certificates (default: the system's)"))
    log_level: Literal["crit", "error", "warn", "info", "debug"] = Field(default="warn", description=(
        "the worker's log level"))
    log_format: Literal["text", "json"] = Field(default="text", description=(
        "json: one JSON object per line, for a log pipeline (a line about a movement has its sku, channel, "
        "event_id)"))
    data_dir: Path = Field(default=Path("stocksync-data"), description="where a worker keeps its RocksDB stores")
    min_free_disk_mb: int = Field(default=64, ge=0, le=1_048_576, description=(
        "below this much free space on the data directory's disk the worker takes no input (and is not ready) "
        "until there is room again"))
    # The hot path works per batch: up to this many messages, or what arrived within the wait.
    max_batch: int = Field(default=500, ge=1, le=100_000, description=(
        "messages handled together (one table write per SKU per batch)"))
    batch_wait_s: float = Field(default=0.02, gt=0, le=5, description=(
        "a batch closes this long after its first message (or when full)"))
    expiry_interval_s: float = Field(default=1.0, gt=0, le=3600, description=(
        "how often lapsed reservations are looked for"))
    # 256 KiB: far below librdkafka's message.max.bytes and the broker's default max.message.bytes, 1 MiB.
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=16 * 1024, le=64 * 1024 * 1024,
                                  description=(
        "the largest record a worker writes; a SKU's state stays below it whatever its history, an output that "
        "would not fit is dead-lettered, and a dead letter of a larger input keeps its first bytes"))
    horizon_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000, description=(
        "how far back late events are still reconciled exactly (older ones are dead-lettered as too_late)"))
    crash_before_commit: int = Field(default=0, ge=0, description=(
        "fault injection for tests, 0 (off) in production: exit abruptly before committing the N-th transaction"))
    order_decision_s: float = Field(default=20.0, ge=1, le=3600, description=(
        "an order not decided this long after its request is refused (timeout) and its holds released; its "
        "tentative holds lapse by themselves 10 s after that"))
    order_memory_s: float = Field(default=3600.0, ge=60, le=30 * 24 * 3600, description=(
        "how long a decided order is remembered: re-sending it within this gets its decision again; after it, "
        "its id is free and a request with it is a new order"))
    crash_before_order_step: Literal["", "ask_figures", "figures", "place_hold", "source_hold", "hold_answer",
                                     "confirm_hold", "hold_confirmed", "order_decided"] = Field(
        default="", description=(
        "fault injection for tests, empty (off) in production: exit abruptly before committing the first "
        "transaction that sends this order step (hold_confirmed: that applies a confirmation; order_decided: that "
        "tells a channel an order's decision)"))
    rocksdb_write_buffer_mb: int = Field(default=16, ge=1, le=1024, description=(
        "RocksDB write buffer per table partition"))
    rocksdb_block_cache_mb: int = Field(default=64, ge=1, le=16384, description=(
        "RocksDB block cache per table partition"))

    # The local broker (Apache Kafka's jars from Maven Central, run with Java).
    cache_dir: Path = Field(default=DEFAULT_CACHE_DIR, description=(
        "where the local broker's jars, data and state live (deploy/dev.sh uses .cache/)"))
    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$", description=(
        "the Kafka release the local broker runs"))
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mMgG]$", description="the local broker's JVM heap")
    broker_start_timeout_s: float = Field(default=90.0, gt=0, description=(
        "how long the local broker may take to answer after its start"))

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in filter(None, value.split(",")):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @property
    def input_group(self) -> str:
        """The consumer group where workers commit how far they have read the inputs (for lag monitoring)."""
        return f"{self.app_id}.inputs"

    def _files_present(self, *names: str) -> None:
        for name in names:
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"STOCKSYNC_{name.upper()}: no file at {path}")

    def _secret(self, name: str) -> str | None:
        """A secret from STOCKSYNC_<NAME> or, better, from the file STOCKSYNC_<NAME>_FILE names (its line break
        left out); not both."""
        value: SecretStr | None = getattr(self, name)
        path: Path | None = getattr(self, f"{name}_file")
        if value is not None and path is not None:
            raise ConfigError(f"STOCKSYNC_{name.upper()} and STOCKSYNC_{name.upper()}_FILE: set one, not both")
        if path is not None:
            return path.read_text().rstrip("\r\n")
        return value.get_secret_value() if value is not None else None

    def kafka_connection(self, servers: str) -> KafkaConnection:
        """The cluster at `servers`, reached with these settings' security and librdkafka settings."""
        return KafkaConnection(servers, self.kafka_security(), passed_through(self.librdkafka_settings()))

    def librdkafka_settings(self) -> dict[str, object]:
        """STOCKSYNC_LIBRDKAFKA with the settings STOCKSYNC_LIBRDKAFKA_FILE holds."""
        if self.librdkafka_file is None:
            return dict(self.librdkafka)
        self._files_present("librdkafka_file")
        try:
            found = json.loads(self.librdkafka_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"STOCKSYNC_LIBRDKAFKA_FILE: {self.librdkafka_file} is not JSON: {exc}") from None
        if not isinstance(found, dict) or not all(isinstance(v, (str, int, float, bool)) for v in found.values()):
            raise ConfigError(f"STOCKSYNC_LIBRDKAFKA_FILE: {self.librdkafka_file} must hold one JSON object of "
                              "names and plain values")
        twice = sorted(set(found) & set(self.librdkafka))
        if twice:
            raise ConfigError(f"STOCKSYNC_LIBRDKAFKA and STOCKSYNC_LIBRDKAFKA_FILE both set {twice}: set each once")
        return {**self.librdkafka, **found}

    def kafka_security(self) -> KafkaSecurity:
        """How to connect to Kafka; a ConfigError naming the setting when something is missing or unreadable."""
        self._files_present("sasl_password_file", "ssl_ca_file", "ssl_cert_file", "ssl_key_file",
                            "oauth_client_secret_file")
        password = self._secret("sasl_password")
        secret = self._secret("oauth_client_secret")
        oauth = OAuthClient(self.oauth_token_url, self.oauth_client_id, secret, self.oauth_scope) \
            if self.sasl_mechanism == "OAUTHBEARER" and self.oauth_token_url and self.oauth_client_id and secret \
            else None
        security = KafkaSecurity(self.security_protocol, self.sasl_mechanism, self.sasl_username, password,
                                 self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file, oauth)
        problem = security.problem()
        if problem:
            raise ConfigError(problem)
        return security

    def schema_registry(self) -> dict[str, object] | None:
        """confluent-kafka's SchemaRegistryClient configuration, or None without a registry."""
        if self.schema_registry_url is None:
            return None
        self._files_present("schema_registry_password_file", "schema_registry_ca_file")
        config: dict[str, object] = {"url": self.schema_registry_url, **self.schema_registry_config}
        password = self._secret("schema_registry_password")
        if (self.schema_registry_user is None) != (password is None):
            raise ConfigError("STOCKSYNC_SCHEMA_REGISTRY_USER and STOCKSYNC_SCHEMA_REGISTRY_PASSWORD go together")
        if self.schema_registry_user is not None:
            config["basic.auth.user.info"] = f"{self.schema_registry_user}:{password}"
        if self.schema_registry_ca_file is not None:
            config["ssl.ca.location"] = str(self.schema_registry_ca_file)
        return config

    def api_access(self) -> ApiAccess:
        """How the API is guarded; a ConfigError naming the setting when a file is missing or they disagree."""
        self._files_present("api_token_file", "web_tls_cert_file", "web_tls_key_file", "web_ca_file")
        token = self._secret("api_token")
        if (self.web_tls_cert_file is None) != (self.web_tls_key_file is None):
            raise ConfigError("STOCKSYNC_WEB_TLS_CERT_FILE and STOCKSYNC_WEB_TLS_KEY_FILE go together")
        if token is not None and self.api_token_file is not None:
            token = token.strip()
        if token is not None and len(token) < MIN_API_TOKEN_CHARS:
            raise ConfigError(f"the API token is {len(token)} characters: use at least {MIN_API_TOKEN_CHARS} "
                              "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return ApiAccess(token, self.web_tls_cert_file, self.web_tls_key_file, self.web_ca_file)

    @property
    def api_url(self) -> str:
        """Where this worker's API is reached (other workers forward to it; `stocksync query` asks it)."""
        scheme = "https" if self.web_tls_cert_file else "http"
        return self.advertised_url or f"{scheme}://{self.web_host}:{self.web_port}"

    @property
    def broker_home(self) -> Path:
        """Where the local broker's jars, data and state live."""
        return self.cache_dir / f"kafka-{self.kafka_version}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value becomes a ConfigError naming the variable, not a traceback."""
    if "bootstrap_servers" not in overrides and not os.environ.get("STOCKSYNC_BOOTSTRAP_SERVERS"):
        # The variable every Kafka tool knows also selects the cluster.
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            overrides["bootstrap_servers"] = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"STOCKSYNC_{field.upper()}: {first['msg']}") from None
