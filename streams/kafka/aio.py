"""aiokafka with the project's settings, for the worker's own asyncio reading (its inputs, the network, the
compacted topics every worker follows): the only module outside the worker's runtime that imports aiokafka."""

from __future__ import annotations

import asyncio
import inspect
import time
from functools import cache
from typing import Any

from aiokafka import AIOKafkaConsumer as AIOKafkaConsumer
from aiokafka import TopicPartition as TopicPartition
from aiokafka.abc import AbstractTokenProvider

from streams.errors import ConfigError
from streams.security import KafkaConnection, KafkaSecurity, OAuthClient, connection_of

RENEW_AT = 0.8  # of a token's lifetime: a new one is fetched then, before the brokers would refuse it


def new_aio_consumer(servers: KafkaConnection | str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer for the worker's own reading (`options` in aiokafka's names)."""
    kafka = connection_of(servers)
    return AIOKafkaConsumer(bootstrap_servers=kafka.servers, enable_auto_commit=False,
                            **aiokafka_security(kafka.security), **{**passed_to_aiokafka(kafka.librdkafka), **options})


# What stocksync gives an aiokafka consumer itself (its guarantees, its security settings): never passed through.
_OWN = frozenset({"bootstrap_servers", "enable_auto_commit", "group_id", "isolation_level", "security_protocol",
                  "auto_offset_reset", "key_deserializer", "value_deserializer", "loop", "topics"})


def passed_to_aiokafka(librdkafka: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The passed-through librdkafka settings aiokafka knows by the same name (dots as underscores), in its types;
    the rest are librdkafka's only (see librdkafka_only)."""
    parameters = inspect.signature(AIOKafkaConsumer.__init__).parameters
    options: dict[str, Any] = {}
    for key, value in librdkafka:
        name = key.replace(".", "_")
        if name not in parameters or name in _OWN or name.startswith(("sasl_", "ssl_")):
            continue
        default = parameters[name].default
        try:
            options[name] = (value == "true" if isinstance(default, bool) else int(value)
                             if isinstance(default, int) else float(value) if isinstance(default, float) else value)
        except ValueError:
            raise ConfigError(f"STOCKSYNC_LIBRDKAFKA: {key}={value!r}: a number is expected") from None
    return options


def librdkafka_only(librdkafka: tuple[tuple[str, str], ...]) -> list[str]:
    """The passed-through settings aiokafka does not take."""
    taken = passed_to_aiokafka(librdkafka)
    return [key for key, _ in librdkafka if key.replace(".", "_") not in taken]


def aiokafka_security(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka's keyword arguments for `security`, an OAUTHBEARER sign-in's token provider included."""
    options = security.aiokafka()
    if security.oauth is not None:
        options["sasl_oauth_token_provider"] = token_provider(security.oauth)
    return options


@cache
def token_provider(client: OAuthClient) -> AbstractTokenProvider:
    """One token provider per OAuth client and process: its token is shared by every connection."""
    return ClientCredentialsTokens(client)


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's (and faust's) OAUTHBEARER tokens: fetched from the token endpoint off the event loop, kept until
    RENEW_AT of their lifetime."""

    def __init__(self, client: OAuthClient) -> None:
        self.client = client
        self.current: str | None = None
        self.renew_at = 0.0

    async def token(self) -> str:
        if self.current is None or time.monotonic() >= self.renew_at:
            token, lifetime_s = await asyncio.to_thread(self.client.fetch)
            self.current, self.renew_at = token, time.monotonic() + lifetime_s * RENEW_AT
        return self.current

