"""How stocksync authenticates to Kafka and encrypts the connection: one description (`KafkaSecurity`), turned into
librdkafka's settings (confluent-kafka: channel clients, the CLI, admin, transactions) and aiokafka's (the input
reader, and faust through the worker's runtime), so both sides of a worker connect the same way. The password is
kept out of every repr, log line and error."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from streams.errors import ConfigError, StocksyncError

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class SignInFailed(StocksyncError):
    """The identity provider did not give a token (refused the client, or could not be reached)."""


@dataclass(frozen=True)
class OAuthClient:
    """An OAUTHBEARER sign-in: a client of the identity provider's token endpoint (OAuth 2.0 client-credentials
    grant, as Keycloak, Okta, Entra ID and the clouds' IAM offer it), its tokens handed to the brokers."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None

    def fetch(self, timeout_s: float = 10.0) -> tuple[str, float]:
        """A fresh access token and its lifetime in seconds (SignInFailed, naming the endpoint, when none)."""
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        basic = base64.b64encode(f"{urllib.parse.quote(self.client_id)}:"
                                 f"{urllib.parse.quote(self.client_secret)}".encode()).decode()
        request = urllib.request.Request(self.token_url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                         headers={"Authorization": f"Basic {basic}", "Accept": "application/json",
                                                  "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the setting's URL
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SignInFailed(f"the token endpoint {self.token_url} refused client {self.client_id!r}: HTTP "
                               f"{exc.code} {exc.read()[:200].decode(errors='replace')}; check "
                               "STOCKSYNC_OAUTH_CLIENT_ID and STOCKSYNC_OAUTH_CLIENT_SECRET") from None
        except (OSError, ValueError) as exc:
            raise SignInFailed(f"the token endpoint {self.token_url} did not answer: {exc}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise SignInFailed(f"the token endpoint {self.token_url} answered without an access_token")
        return answer["access_token"], float(answer.get("expires_in") or 300)


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"  # SASL only
    username: str | None = None  # SASL only
    password: str | None = field(default=None, repr=False)  # SASL only
    ca_file: Path | None = None  # TLS: the CAs that signed the brokers' certificates (else the system's)
    cert_file: Path | None = None  # TLS client certificate (mutual TLS), PEM
    key_file: Path | None = None  # its private key, PEM
    oauth: OAuthClient | None = None  # SASL OAUTHBEARER only

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def problem(self) -> str | None:
        """What is missing or inconsistent, as the settings name it (None when it can connect)."""
        if self.sasl and self.mechanism == "OAUTHBEARER":
            if self.oauth is None:
                return "STOCKSYNC_SASL_MECHANISM=OAUTHBEARER needs STOCKSYNC_OAUTH_TOKEN_URL, " \
                       "STOCKSYNC_OAUTH_CLIENT_ID and STOCKSYNC_OAUTH_CLIENT_SECRET (or _FILE)"
        elif self.sasl and not (self.username and self.password):
            return f"STOCKSYNC_SECURITY_PROTOCOL={self.protocol} needs STOCKSYNC_SASL_USERNAME and " \
                   "STOCKSYNC_SASL_PASSWORD (or STOCKSYNC_SASL_PASSWORD_FILE)"
        if (self.cert_file is None) != (self.key_file is None):
            return "STOCKSYNC_SSL_CERT_FILE and STOCKSYNC_SSL_KEY_FILE go together (a client certificate and its key)"
        if not self.tls and (self.ca_file or self.cert_file):
            return f"TLS files are set but STOCKSYNC_SECURITY_PROTOCOL is {self.protocol} (use SSL or SASL_SSL)"
        return None

    def environment(self) -> dict[str, str]:
        """The STOCKSYNC_ variables that give a child process (a worker) this security."""
        values = {"SECURITY_PROTOCOL": self.protocol, "SASL_MECHANISM": self.mechanism,
                  "SASL_USERNAME": self.username, "SASL_PASSWORD": self.password, "SSL_CA_FILE": self.ca_file,
                  "SSL_CERT_FILE": self.cert_file, "SSL_KEY_FILE": self.key_file}
        if self.oauth is not None:
            values.update({"OAUTH_TOKEN_URL": self.oauth.token_url, "OAUTH_CLIENT_ID": self.oauth.client_id,
                           "OAUTH_CLIENT_SECRET": self.oauth.client_secret, "OAUTH_SCOPE": self.oauth.scope})
        return {f"STOCKSYNC_{name}": str(value) for name, value in values.items() if value is not None}

    def librdkafka(self) -> dict[str, Any]:
        """librdkafka's settings (confluent-kafka)."""
        config: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl and self.oauth is not None:  # librdkafka fetches and renews the tokens itself
            config.update({"sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
                           "sasl.oauthbearer.token.endpoint.url": self.oauth.token_url,
                           "sasl.oauthbearer.client.id": self.oauth.client_id,
                           "sasl.oauthbearer.client.secret": self.oauth.client_secret})
            if self.oauth.scope:
                config["sasl.oauthbearer.scope"] = self.oauth.scope
        elif self.sasl:
            config.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                           "sasl.password": self.password})
        if self.tls:
            config.update({k: str(v) for k, v in (("ssl.ca.location", self.ca_file),
                                                  ("ssl.certificate.location", self.cert_file),
                                                  ("ssl.key.location", self.key_file)) if v is not None})
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the aiokafka side: the CA file (or the system's CAs), the client certificate."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def aiokafka(self) -> dict[str, Any]:
        """aiokafka's keyword arguments (for OAUTHBEARER, streams.kafka.aio adds the token provider)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl and self.oauth is not None:
            options["sasl_mechanism"] = "OAUTHBEARER"
        elif self.sasl:
            options.update({"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                            "sasl_plain_password": self.password})
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        return options


PLAINTEXT = KafkaSecurity()


# librdkafka settings stocksync sets itself, for its guarantees or from its own settings: never passed through.
RESERVED_LIBRDKAFKA = frozenset({"bootstrap.servers", "group.id", "transactional.id", "enable.idempotence", "acks",
                                 "isolation.level", "enable.auto.commit", "partitioner", "logger", "error_cb"})


def passed_through(config: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """Other librdkafka settings for every confluent-kafka client (a sign-in stocksync does not name, such as
    OAUTHBEARER, a client rack, timeouts), as librdkafka takes them; ConfigError for one stocksync sets itself."""
    reserved = sorted(set(config) & RESERVED_LIBRDKAFKA)
    if reserved:
        raise ConfigError(f"librdkafka settings {reserved}: stocksync sets these itself (its guarantees or its "
                          "own STOCKSYNC_ settings); they cannot be passed through")
    return tuple(sorted((key, str(value).lower() if isinstance(value, bool) else str(value))
                        for key, value in config.items()))


@dataclass(frozen=True)
class KafkaConnection:
    """A cluster to talk to: its bootstrap servers and how to connect. Every client is made from one."""

    servers: str
    security: KafkaSecurity = PLAINTEXT
    # librdkafka settings passed through to every confluent-kafka client made from this connection
    librdkafka: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold secrets

    def __str__(self) -> str:
        return self.servers


# What a client is made from: a connection, or a plain "host:port,..." of an unsecured cluster.
Kafka = KafkaConnection | str


def connection_of(target: Kafka) -> KafkaConnection:
    """A plain "host:port,..." string means an unsecured cluster (tests, the local broker)."""
    return target if isinstance(target, KafkaConnection) else KafkaConnection(target)
