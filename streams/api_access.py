"""How the workers' HTTP API is guarded: a bearer token (shared by the workers and given to their callers) and TLS.

/ready, /live and /metrics stay open: Kubernetes probes and Prometheus call them without credentials, and they
tell nothing about stock. Everything else needs `Authorization: Bearer <token>` when a token is set. The token is
compared in constant time and appears in no log, error or page."""

from __future__ import annotations

import hmac
import ssl
from dataclasses import dataclass, field
from pathlib import Path

MIN_API_TOKEN_CHARS = 16
OPEN_PATHS = frozenset({"/ready", "/live", "/metrics"})


@dataclass(frozen=True)
class ApiAccess:
    token: str | None = field(default=None, repr=False)
    cert_file: Path | None = None  # the API's certificate chain, PEM (None: plain HTTP)
    key_file: Path | None = None
    ca_file: Path | None = None  # what a caller trusts for the workers' certificates (None: the system's CAs)

    def refusal(self, path: str, authorization: str | None) -> str | None:
        """Why a request for `path` with this Authorization header is refused (None: let it in)."""
        if self.token is None or path in OPEN_PATHS:
            return None
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return "this API needs a bearer token (Authorization: Bearer <STOCKSYNC_API_TOKEN>)"
        if not hmac.compare_digest(presented.strip().encode(), self.token.encode()):
            return "the bearer token is not this API's"
        return None

    def headers(self) -> dict[str, str]:
        """What a caller (`stocksync query`, a worker forwarding to the SKU's owner) sends."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def server_context(self) -> ssl.SSLContext | None:
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def client_context(self) -> ssl.SSLContext:
        """How a caller verifies a worker's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
