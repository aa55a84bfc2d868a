"""Avro single-object encoding (marker, CRC-64-AVRO fingerprint, body) of the records in schemas/.

`Codec` is the seam: `SingleObjectCodec` needs no registry (any Avro library reads the fingerprint); a Confluent
Schema Registry wire format (magic byte + schema id) can be added as another Codec without touching the callers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol

import fastavro
from fastavro.schema import to_parsing_canonical_form

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


class Codec(Protocol):
    def encode(self, schema: str, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]: ...


class SingleObjectCodec:
    """Avro single-object encoding for every schema in schemas/."""

    def __init__(self, schemas: Mapping[str, Any] | None = None,
                 history: Mapping[str, list[Any]] | None = None) -> None:
        """`schemas`: what is written and read into (default: schemas/); `history`: earlier versions of them,
        read by schema resolution (default: schemas/history/ when `schemas` is the default)."""
        self.schemas = dict(schemas or load_schemas())
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
        body = io.BytesIO(data[10:])
        writer = self.writers.get(header)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self.schemas[name], None)
            else:  # an earlier (or later) version: Avro's schema resolution into the one this codec reads
                record = fastavro.schemaless_reader(body, writer, self.schemas[name])
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types for a broken body
            raise DecodeError("schema_violation",
                              f"{name}: body does not match the schema ({type(exc).__name__}: {exc})") from None
        trailing = len(data) - 10 - body.tell()
        if trailing:
            raise DecodeError("schema_violation", f"{name}: {trailing} bytes after the end of the record")
        if not isinstance(record, dict):
            raise DecodeError("schema_violation", f"{name}: decoded to {type(record).__name__}, not a record")
        return name, record

    def decode_as(self, data: bytes, *expected: str) -> tuple[str, dict[str, Any]]:
        name, record = self.decode(data)
        if name not in expected:
            raise DecodeError("wrong_schema", f"schema {name} where {' or '.join(expected)} was expected")
        return name, record


@lru_cache(maxsize=1)
def default_codec() -> SingleObjectCodec:
    return SingleObjectCodec()
