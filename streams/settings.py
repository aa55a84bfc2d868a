"""Typed settings read from the environment (prefix STOCKSYNC_), with defaults for the local broker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.api_access import MIN_API_TOKEN_CHARS, ApiAccess
from streams.errors import ConfigError
from streams.security import KafkaSecurity

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stocksync"
DEFAULT_MAX_RECORD_BYTES = 256 * 1024


class Settings(BaseSettings):
    """Every knob of stocksync; each field is read from STOCKSYNC_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="STOCKSYNC_", frozen=True, extra="ignore")

    # Where Kafka is. Empty: the local broker that `stocksync broker start` runs (its state file says where).
    bootstrap_servers: str = ""
    # How to connect to it: the same for the workers, the CLI and channel clients (streams/security.py).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # or, better, a file (a mounted Kubernetes Secret):
    sasl_password_file: Path | None = None
    ssl_ca_file: Path | None = None  # the CAs that signed the brokers' certificates (default: the system's)
    ssl_cert_file: Path | None = None  # a client certificate (mutual TLS), PEM
    ssl_key_file: Path | None = None  # its private key, PEM
    # Who is who on a cluster with ACLs ('stocksync acl apply'): a principal is TYPE:NAME, as the brokers name it.
    workers_principal: str = Field(default="User:stocksync", pattern=r"^[A-Za-z]+:.+$")
    admin_principal: str = Field(default="User:admin", pattern=r"^[A-Za-z]+:.+$")
    channel_principal: str = Field(default="User:channel-{channel}", pattern=r"^[A-Za-z]+:.*\{channel\}.*$")
    topic_prefix: str = Field(default="stocksync", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
    # Every input topic has the same partition count, so all positions of a SKU meet on one worker.
    partitions: int = Field(default=6, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    ledger_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=60_000)
    deadletter_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=60_000)

    # The faust worker.
    app_id: str = Field(default="stocksync", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    # A killed worker's partitions move after this (faust joins its group after about half of it). 6 s is the least
    # a broker allows by default (group.min.session.timeout.ms); heartbeats come from faust's consumer thread, so a
    # long batch does not miss them.
    broker_session_timeout_s: float = Field(default=6.0, gt=0)
    # Workers besides its owner that keep a warm copy of each table partition (RocksDB store only), so that one of
    # them takes it over without reading its whole changelog first.
    standby_replicas: int = Field(default=1, ge=0, le=10)
    web_port: int = Field(default=6066, ge=0, le=65535)
    # The query API: where it listens, and the URL other workers use to reach it (routing by SKU owner).
    web_host: str = "127.0.0.1"
    advertised_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    # The API's guard: a bearer token every request needs but /ready, /live and /metrics (probes and Prometheus),
    # and TLS. The workers share them: a request reaching a worker that does not own the SKU is forwarded with it.
    api_token: SecretStr | None = None  # or, better, a file (a mounted Kubernetes Secret):
    api_token_file: Path | None = None
    web_tls_cert_file: Path | None = None  # the API's certificate (chain), PEM: the API then speaks HTTPS only
    web_tls_key_file: Path | None = None  # its private key, PEM
    web_ca_file: Path | None = None  # the CA that signed the workers' API certificates (default: the system's)
    log_level: Literal["crit", "error", "warn", "info", "debug"] = "warn"
    # json: one JSON object per line, for a log pipeline; a line about a movement has its sku, channel, event_id.
    log_format: Literal["text", "json"] = "text"
    data_dir: Path = Path("stocksync-data")
    # The hot path works per batch: up to this many messages, or what arrived within the wait.
    max_batch: int = Field(default=500, ge=1, le=100_000)
    batch_wait_s: float = Field(default=0.02, gt=0, le=5)
    expiry_interval_s: float = Field(default=1.0, gt=0, le=3600)
    # The largest record a worker writes (256 KiB: far below librdkafka's message.max.bytes and the broker's
    # default max.message.bytes, 1 MiB). A SKU's state records stay below it whatever its history; an output that
    # would not fit is isolated (dead-lettered), and a dead letter of a larger input keeps its first bytes.
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=16 * 1024, le=64 * 1024 * 1024)
    # How far back late events are still reconciled exactly (older ones are dead-lettered as too_late).
    horizon_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    # Fault injection for tests, 0 (off) in production: the worker exits abruptly once it has written this many
    # transactions, before committing the last one.
    crash_before_commit: int = Field(default=0, ge=0)
    rocksdb_write_buffer_mb: int = Field(default=16, ge=1, le=1024)
    rocksdb_block_cache_mb: int = Field(default=64, ge=1, le=16384)

    # The local broker (Apache Kafka's jars from Maven Central, run with Java).
    cache_dir: Path = DEFAULT_CACHE_DIR
    kafka_version: str = Field(default="4.1.1", pattern=r"^4\.\d+\.\d+$")
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mMgG]$")
    broker_start_timeout_s: float = Field(default=90.0, gt=0)

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

    def kafka_security(self) -> KafkaSecurity:
        """How to connect to Kafka; a ConfigError naming the setting when something is missing or unreadable."""
        self._files_present("sasl_password_file", "ssl_ca_file", "ssl_cert_file", "ssl_key_file")
        password = self._secret("sasl_password")
        security = KafkaSecurity(self.security_protocol, self.sasl_mechanism, self.sasl_username, password,
                                 self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file)
        problem = security.problem()
        if problem:
            raise ConfigError(problem)
        return security

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
