"""An OAuth 2.0 identity provider for the tests, over HTTP in the test process: the client-credentials grant of a
token endpoint (as Keycloak, Okta, Entra ID or a cloud's IAM answer it) issuing RS256-signed JWTs whose `sub` is
the client id, and the JWKS endpoint a broker verifies them with. The broker's verification is Kafka's own
(OAuthBearerValidatorCallbackHandler): a token this provider did not sign, or an expired one, is refused there."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from streams.dev.local_kafka import OAUTH_AUDIENCE
from tests.integration.json_http import JsonHttpService

KEY_ID = "stocksync-test-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class IdentityProvider(JsonHttpService):
    def __init__(self, clients: dict[str, str], lifetime_s: int = 3600) -> None:
        super().__init__()
        self.clients = dict(clients)  # client id -> secret
        self.lifetime_s = lifetime_s
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issued: list[str] = []  # the client ids tokens were issued to, in order
        self.refused: list[str] = []
        self.lock = threading.Lock()

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/jwks":
            return 200, self.jwks()
        if method == "POST" and path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self.token(headers.get("Authorization"), form)
        return 404, {"error": "not_found"}

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": KEY_ID, "use": "sig", "alg": "RS256",
                          "n": _uint(numbers.n), "e": _uint(numbers.e)}]}

    def token(self, authorization: str | None, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The client-credentials grant: the client's id and secret in HTTP Basic auth or in the form."""
        client, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
        with self.lock:
            if form.get("grant_type") != "client_credentials" or client not in self.clients or \
                    self.clients[client] != secret:
                self.refused.append(str(client))
                return 401, {"error": "invalid_client"}
            self.issued.append(client)
        now = int(time.time())
        claims = {"sub": client, "iss": self.url, "aud": OAUTH_AUDIENCE, "iat": now, "nbf": now,
                  "exp": now + self.lifetime_s, "scope": form.get("scope", "kafka")}
        return 200, {"access_token": self.sign(claims), "token_type": "bearer", "expires_in": self.lifetime_s,
                     "scope": claims["scope"]}

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"
