"""Avro single-object encoding (marker, CRC-64-AVRO fingerprint, body) of the records in schemas/.

`SingleObjectCodec` needs no registry (any Avro library reads the fingerprint); `RegistryCodec`
(streams/kafka/schema_registry.py) writes the channel-facing records in a Schema Registry's wire format instead.

fastavro reads and writes everything. Where cavro (a Cython Avro library) is installed, it writes the records and
reads back the ones a worker stored itself: it takes half fastavro's time per record, and a worker spends a third
of its CPU on Avro. It is declared only where it has wheels (see pyproject.toml); the bytes are the same either way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

try:
    import cavro
except ImportError:  # no wheel for this Python or machine: fastavro does all of it
    cavro = None

from streams.errors import StocksyncError
from streams.wire.schemas import history_legacy_forms, legacy_fingerprint_forms, load_history, load_schemas

MARKER = b"\xc3\x01"  # Avro single-object encoding, format version 1
_EMPTY64 = 0xC15D213AA4D7A795


class DecodeError(StocksyncError):
    """Bytes that are not a record of an expected schema; `reason` is a short code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # not_avro | unknown_schema | schema_violation | wrong_schema


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint of the Avro specification ("CRC-64-AVRO")."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


class SingleObjectCodec:
    """Avro single-object encoding for every schema in schemas/."""

    def __init__(self, schemas: Mapping[str, Any] | None = None,
                 history: Mapping[str, list[Any]] | None = None, accelerated: bool = cavro is not None) -> None:
        """`schemas`: what is written and read into (default: schemas/); `history`: earlier versions of them,
        read by schema resolution (default: schemas/history/ when `schemas` is the default); `accelerated`: write
        with cavro (and read what `decode_stored` is given with it)."""
        self.schemas = dict(schemas or load_schemas())
        self.fast = {name: _compiled(schema) for name, schema in self.schemas.items()} if accelerated else {}
        self.headers = {name: MARKER + self.fingerprint(name).to_bytes(8, "little") for name in self.schemas}
        self.by_header = {header: name for name, header in self.headers.items()}
        self.writers: dict[bytes, Any] = {}  # the header of an earlier version -> the schema it was written with
        if schemas is None and history is None:
            # Legacy fingerprints were written by the first versions only: one an earlier version shares with the
            # current schema (a bare type name hides what changed inside) is read with that earlier version.
            for name, forms in history_legacy_forms().items():
                for form, writer in forms if name in self.schemas else []:
                    header = MARKER + crc64_avro(form.encode()).to_bytes(8, "little")
                    if header not in self.by_header:
                        self.by_header[header], self.writers[header] = name, writer
        if schemas is None:  # records written with the fingerprints of older versions are still read
            for name, form in legacy_fingerprint_forms().items():
                self.by_header.setdefault(MARKER + crc64_avro(form.encode()).to_bytes(8, "little"), name)
        for name, versions in (load_history() if history is None and schemas is None else history or {}).items():
            for writer in versions if name in self.schemas else []:
                header = MARKER + crc64_avro(to_parsing_canonical_form(writer).encode()).to_bytes(8, "little")
                if header not in self.by_header:
                    self.by_header[header], self.writers[header] = name, writer

    def fingerprint(self, schema: str) -> int:
        return crc64_avro(to_parsing_canonical_form(self.schemas[schema]).encode())

    def encode(self, schema: str, record: Mapping[str, Any]) -> bytes:
        fast = self.fast.get(schema)
        if fast is not None:
            try:
                body: bytes = fast.binary_encode(record)
                return self.headers[schema] + body
            except Exception:  # noqa: BLE001 - cavro is stricter (it refuses a float for a long): fastavro decides
                pass
        out = io.BytesIO()
        out.write(self.headers[schema])
        fastavro.schemaless_writer(out, self.schemas[schema], record)
        return out.getvalue()

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if data is None or len(data) < 10 or data[:2] != MARKER:
            raise DecodeError("not_avro", "not Avro single-object encoded (missing C3 01 marker)")
        header = bytes(data[:10])
        name = self.by_header.get(header)
        if name is None:
            raise DecodeError("unknown_schema", f"unknown schema fingerprint {bytes(data[2:10]).hex()}")
        return name, self.body(name, self.writers.get(header), data, 10)

    def body(self, name: str, writer: Any, data: bytes, start: int) -> dict[str, Any]:
        """The record `data` holds from `start` on, written with `writer` (None: the current schema `name`)."""
        body = io.BytesIO(data[start:])
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self.schemas[name], None)
            else:  # an earlier (or later) version: Avro's schema resolution into the one this codec reads
                record = fastavro.schemaless_reader(body, writer, self.schemas[name])
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for a broken body
            raise _broken_body(name, exc) from None
        trailing = len(data) - start - body.tell()
        if trailing:
            raise DecodeError("schema_violation", f"{name}: {trailing} bytes after the end of the record")
        if not isinstance(record, dict):
            raise DecodeError("schema_violation", f"{name}: decoded to {type(record).__name__}, not a record")
        return record

    def unlearned(self, values: Iterable[bytes | None]) -> set[int]:
        """Schema ids among `values` this codec would have to ask a registry for (none without a registry)."""
        return set()

    def learn(self, schema_id: int) -> None:
        """Ask the registry for `schema_id` (see RegistryCodec)."""

    def decode_as(self, data: bytes, *expected: str) -> tuple[str, dict[str, Any]]:
        name, record = self.decode(data)
        if name not in expected:
            raise DecodeError("wrong_schema", f"schema {name} where {' or '.join(expected)} was expected")
        return name, record

    def decode_stored(self, data: bytes, *expected: str) -> tuple[str, dict[str, Any]]:
        """`decode_as` for a record this worker stored itself (its state): read with cavro where it is installed
        and the record has the current schema. cavro does not say where a record ends, so bytes after it are not
        looked for: a worker's own records have none (what other producers write is read with `decode_as`)."""
        header = bytes(data[:10])
        name = self.by_header.get(header, "")
        fast = self.fast.get(name) if name in expected and header not in self.writers else None
        if fast is None:
            return self.decode_as(data, *expected)
        try:
            return name, fast.binary_decode(bytes(data[10:]))
        except Exception as exc:  # noqa: BLE001 - as decode: any broken body is a schema violation
            raise _broken_body(name, exc) from None


def _broken_body(name: str, exc: Exception) -> DecodeError:
    return DecodeError("schema_violation", f"{name}: body does not match the schema ({type(exc).__name__}: {exc})")


def _compiled(schema: Mapping[str, Any]) -> Any:
    """cavro's form of a schema fastavro has parsed, with fastavro's leniencies where they keep bytes the same
    (extra fields ignored, a missing nullable field written as null) and records read as dicts."""
    options = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True, missing_values_can_be_null=True)
    return cavro.Schema(json.dumps(without_fastavro_keys(schema)), options=options)


def without_fastavro_keys(value: Any) -> Any:
    """A schema fastavro has parsed, without the keys fastavro adds: as any Avro library or registry reads it."""
    if isinstance(value, dict):
        return {k: without_fastavro_keys(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [without_fastavro_keys(v) for v in value]
    return value


@lru_cache(maxsize=1)
def default_codec() -> SingleObjectCodec:
    return SingleObjectCodec()
