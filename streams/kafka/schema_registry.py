"""The Confluent Schema Registry wire format: a zero byte, the schema's id in the registry (4 bytes, big endian),
the Avro body; what Confluent's serializers in every language write and read.

With a registry configured (STOCKSYNC_SCHEMA_REGISTRY_URL), the records channels and operators read or write
(schemas/published.json, "schema_registry") are written in this format, each registered under its record's full
name (Confluent's RecordNameStrategy: a channel topic carries more than one record type), and records in either
format are read: a single-object record starts with C3 01, a registry's with 00. The worker's own records (its
state, the steps between workers) stay single-object: they never need a registry to be read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from streams.errors import ConfigError, StocksyncError
from streams.wire.codec import DecodeError, SingleObjectCodec, default_codec, without_fastavro_keys
from streams.wire.schemas import published, resolution_problems

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from streams.settings import Settings


MAGIC = 0


class RegistryUnavailable(StocksyncError):
    """The registry did not answer (or answered with a server error): try again later, nothing is wrong with the
    record."""


class RegistryRefused(ConfigError):
    """The registry refused what stocksync asked of it (an incompatible schema, a schema not registered, no
    rights): a deployment to fix, named in one line."""


def schema_text(schema: Any) -> str:
    """A schema as registered: as in schemas/, with every named type written out (self-contained)."""
    return json.dumps(without_fastavro_keys(schema))


def registry_subjects() -> Mapping[str, str]:
    """Per channel-facing record (full name), the subject it is registered under."""
    subjects: Mapping[str, str] = published()["schema_registry"]["subjects"]
    return subjects


def registry_compatibility() -> str:
    """The compatibility every subject is set to: FULL_TRANSITIVE, as every kept version resolves both ways with
    every other (tests/unit/wire/test_evolution.py)."""
    level: str = published()["schema_registry"]["compatibility"]
    return level


class RegistryCodec(SingleObjectCodec):
    """SingleObjectCodec that writes the channel-facing records in the registry's wire format and reads both.

    A schema is registered (or looked up) the first time a record of it is written; `prepare` does it for all at
    once, so that a worker fails at its start, not in a batch, when the registry refuses. A schema id met in a
    record is asked for once (`learn`) and remembered, refusals too (an id the registry does not know, or of a
    record stocksync does not read, is dead-lettered by the worker)."""

    def __init__(self, client: SchemaRegistryClient, auto_register: bool = True,
                 subjects: Mapping[str, str] | None = None, where: str = "the schema registry") -> None:
        super().__init__()
        self.client, self.auto_register, self.where = client, auto_register, where
        self.subjects = dict(subjects if subjects is not None else registry_subjects())
        for name in self.subjects:
            del self.headers[name]  # written with the registry's id once it is known
        self.by_id: dict[int, tuple[str, Any]] = {}  # a schema id -> (record name, writer schema or None: ours)
        self.refused: dict[int, DecodeError] = {}

    def schema_text(self, name: str) -> str:
        return schema_text(self.schemas[name])

    def prepare(self) -> dict[str, int]:
        """Register (or look up) every channel-facing schema now; their ids by record name."""
        for name in self.subjects:
            if name not in self.headers:
                self.headers[name] = self._header(name)
        return {name: int.from_bytes(self.headers[name][1:5], "big") for name in self.subjects}

    def encode(self, schema: str, record: Mapping[str, Any]) -> bytes:
        if schema not in self.headers:
            self.headers[schema] = self._header(schema)
        return super().encode(schema, record)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if data is None or len(data) < 5 or data[0] != MAGIC:
            return super().decode(data)
        schema_id = int.from_bytes(data[1:5], "big")
        known = self.by_id.get(schema_id)
        if known is None:
            self.learn(schema_id)
            known = self.by_id[schema_id]
        name, writer = known
        return name, self.body(name, writer, data, 5)

    def unlearned(self, values: Iterable[bytes | None]) -> set[int]:
        ids = set()
        for value in values:
            if value is not None and len(value) >= 5 and value[0] == MAGIC:
                schema_id = int.from_bytes(value[1:5], "big")
                if schema_id not in self.by_id and schema_id not in self.refused:
                    ids.add(schema_id)
        return ids

    def learn(self, schema_id: int) -> None:
        """Ask the registry for the schema `schema_id` names. A DecodeError when it is not one stocksync reads
        (remembered); RegistryUnavailable when the registry did not answer (not remembered: ask again later)."""
        if schema_id in self.refused:
            raise self.refused[schema_id]
        if schema_id in self.by_id:
            return
        try:
            text = self._call(lambda: self.client.get_schema(schema_id).schema_str, f"schema id {schema_id}")
        except RegistryRefused as exc:
            raise self._refuse(schema_id, "unknown_schema", str(exc)) from None
        try:
            writer = fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - whatever the registry holds under that id, it is not ours
            raise self._refuse(schema_id, "unknown_schema", f"schema id {schema_id} is not an Avro record stocksync "
                                                            f"reads ({type(exc).__name__})") from None
        name = writer.get("name") if isinstance(writer, dict) else None
        if name not in self.schemas:
            raise self._refuse(schema_id, "unknown_schema", f"schema id {schema_id} is {name or 'not a record'}, "
                                                            "not a record stocksync reads")
        if to_parsing_canonical_form(writer) == to_parsing_canonical_form(self.schemas[name]):
            self.by_id[schema_id] = (name, None)
            return
        problems = resolution_problems(writer, self.schemas[name])
        if problems:
            raise self._refuse(schema_id, "schema_violation", f"{name} of schema id {schema_id} cannot be read "
                                                              f"into this version: {'; '.join(problems[:3])}")
        self.by_id[schema_id] = (name, writer)  # another version: Avro's schema resolution reads it

    def _refuse(self, schema_id: int, reason: str, message: str) -> DecodeError:
        self.refused[schema_id] = DecodeError(reason, message)
        return self.refused[schema_id]

    def _header(self, name: str) -> bytes:
        from confluent_kafka.schema_registry import Schema as RegistrySchema

        subject = self.subjects[name]
        schema = RegistrySchema(self.schema_text(name), "AVRO")
        if self.auto_register:
            self._compatibility(subject)
            schema_id = self._call(lambda: self.client.register_schema(subject, schema), f"registering {subject}")
        else:
            schema_id = self._call(lambda: self.client.lookup_schema(subject, schema).schema_id,
                                   f"looking up {subject} (register it with 'stocksync schemas register')")
        self.by_id[schema_id] = (name, None)
        return bytes([MAGIC]) + int(schema_id).to_bytes(4, "big")

    def _compatibility(self, subject: str) -> None:
        """Set the subject's compatibility unless it has one of its own (a platform team's choice is kept)."""
        from confluent_kafka.schema_registry import SchemaRegistryError

        if type(self.client).__name__ == "MockSchemaRegistryClient":
            return  # the in-process registry keeps no compatibility
        try:
            self.client.get_compatibility(subject)
            return
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise _failure(exc, f"reading {subject}'s compatibility", self.where) from None
        except Exception as exc:  # noqa: BLE001 - a network failure of any kind
            raise RegistryUnavailable(f"{self.where} did not answer reading {subject}'s compatibility: "
                                      f"{type(exc).__name__}: {exc}") from None
        level = registry_compatibility()
        self._call(lambda: self.client.set_compatibility(subject, level), f"setting {subject}'s compatibility")

    def _call(self, call: Any, what: str) -> Any:
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            return call()
        except SchemaRegistryError as exc:
            raise _failure(exc, what, self.where) from None
        except Exception as exc:  # noqa: BLE001 - httpx and the OS raise many types for a registry out of reach
            raise RegistryUnavailable(f"{self.where} did not answer {what}: {type(exc).__name__}: {exc}") from None


def _failure(exc: Any, what: str, where: str) -> StocksyncError:
    """A registry's error answer: a server error may pass, anything else is the deployment's to fix."""
    message = f"{where} refused {what}: {exc.error_message} (HTTP {exc.http_status_code}, error {exc.error_code})"
    if exc.http_status_code >= 500 or exc.http_status_code < 0:
        return RegistryUnavailable(message)
    return RegistryRefused(message)


def codec_for(settings: Settings) -> SingleObjectCodec:
    """The codec a deployment's settings call for: one per registry and process (a mock:// registry is then shared
    by everything in the process, as it is in a channel's own tests)."""
    config = settings.schema_registry()
    if config is None:
        return default_codec()
    return _registry_codec(json.dumps(config, sort_keys=True), settings.schema_registry_auto_register)


@lru_cache(maxsize=8)
def _registry_codec(config: str, auto_register: bool) -> RegistryCodec:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError:
        raise ConfigError("STOCKSYNC_SCHEMA_REGISTRY_URL: a Schema Registry needs confluent-kafka's registry client: "
                          "pip install 'stocksync[registry]'") from None
    try:
        client = SchemaRegistryClient.new_client(json.loads(config))
    except Exception as exc:  # noqa: BLE001 - confluent-kafka refuses an unknown or bad setting with ValueError etc.
        raise ConfigError(f"STOCKSYNC_SCHEMA_REGISTRY_CONFIG: {exc}") from None
    return RegistryCodec(client, auto_register, where=f"the schema registry at {json.loads(config)['url']}")
