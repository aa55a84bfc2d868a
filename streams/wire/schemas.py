"""The Avro schemas of every record stocksync writes or reads (schemas/*.avsc), and their names."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from streams.errors import StocksyncError


class Schema(StrEnum):
    """The full name of every top-level record in schemas/ (the name a codec encodes and decodes by)."""

    MOVEMENT = "stocksync.Movement"
    MOVEMENT_BATCH = "stocksync.MovementBatch"
    SKU_STOCK_STATE = "stocksync.SkuStockState"  # the stock table value of earlier versions: read and converted
    SKU_HEAD = "stocksync.SkuHead"
    SEEN_EVENT = "stocksync.SeenEvent"
    EVENT_CHUNK = "stocksync.EventChunk"
    DELTA_CHUNK = "stocksync.DeltaChunk"
    DELTA_SUMMARY = "stocksync.DeltaSummary"
    HELD_RESERVATION = "stocksync.HeldReservation"
    TRANSFER_IN_TRANSIT = "stocksync.TransferInTransit"
    INPUT_OFFSETS = "stocksync.InputOffsets"
    POSITION_STATE = "stocksync.PositionState"
    LEDGER_ENTRY = "stocksync.LedgerEntry"
    ATS_UPDATE = "stocksync.AtsUpdate"
    RESERVATION_DECISION = "stocksync.ReservationDecision"
    DEAD_LETTER = "stocksync.DeadLetter"
    NETWORK_CONFIG = "stocksync.NetworkConfig"
    TRANSFER_SUGGESTION = "stocksync.TransferSuggestion"
    CATALOG_ENTRY = "stocksync.CatalogEntry"
    ORDER_REQUEST = "stocksync.OrderRequest"
    ORDER_DECISION = "stocksync.OrderDecision"
    ORDER_STEP = "stocksync.OrderStep"
    ORDER_STEP_BATCH = "stocksync.OrderStepBatch"
    ORDER_STATE = "stocksync.OrderState"


def schemas_dir() -> Path:
    """schemas/, which the package carries as streams/schemas (STOCKSYNC_SCHEMAS_DIR overrides)."""
    override = os.environ.get("STOCKSYNC_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


def _full_name(name: str, namespace: str | None) -> str:
    return name if "." in name or name in _PRIMITIVES or not namespace else f"{namespace}.{name}"


def _named_types(schema: Any, namespace: str | None, found: dict[str, Any]) -> None:
    """Every named type defined anywhere in `schema`, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            namespace = schema.get("namespace", namespace)
            found.setdefault(_full_name(schema["name"], namespace), schema)
            for field in schema.get("fields", []):
                _named_types(field["type"], namespace, found)
        elif kind == "array":
            _named_types(schema["items"], namespace, found)
        elif kind == "map":
            _named_types(schema["values"], namespace, found)
        elif isinstance(kind, (dict, list)):
            _named_types(kind, namespace, found)


def _standalone(schema: Any, namespace: str | None, named: Mapping[str, Any], defined: set[str]) -> Any:
    """`schema` with every type it names from another file written out in full where it is first used (and by
    name after that), as the Avro specification's Parsing Canonical Form, and so every Avro library, sees it."""
    if isinstance(schema, str):
        full = _full_name(schema, namespace)
        if full in named and full not in defined:
            return _standalone(named[full], namespace, named, defined)
        return schema
    if isinstance(schema, list):
        return [_standalone(branch, namespace, named, defined) for branch in schema]
    kind = schema.get("type")
    if kind in _NAMED:
        namespace = schema.get("namespace", namespace)
        defined.add(_full_name(schema["name"], namespace))
        if "fields" in schema:
            return {**schema, "fields": [{**field, "type": _standalone(field["type"], namespace, named, defined)}
                                         for field in schema["fields"]]}
        return schema
    if kind == "array":
        return {**schema, "items": _standalone(schema["items"], namespace, named, defined)}
    if kind == "map":
        return {**schema, "values": _standalone(schema["values"], namespace, named, defined)}
    if isinstance(kind, (dict, list)):
        return {**schema, "type": _standalone(kind, namespace, named, defined)}
    return schema


def _read_files() -> dict[str, Any]:
    raw = {}
    for path in sorted(schemas_dir().glob("*.avsc")):
        schema = json.loads(path.read_text())
        raw[_full_name(schema["name"], schema.get("namespace"))] = schema
    if not raw:
        raise StocksyncError(f"no Avro schemas found in {schemas_dir()}")
    return raw


@lru_cache(maxsize=1)
def load_schemas() -> Mapping[str, Any]:
    """Every schema in schemas/, parsed on its own, by full name: a file may refer to types defined in other files,
    and each schema holds them in full (its fingerprint is then the one any Avro library computes)."""
    raw = _read_files()
    named: dict[str, Any] = {}
    for schema in raw.values():
        _named_types(schema, schema.get("namespace"), named)
    parsed = {}
    for name, schema in raw.items():
        try:
            parsed[name] = fastavro.parse_schema(_standalone(schema, schema.get("namespace"), named, set()))
        except fastavro.schema.UnknownType as exc:
            raise StocksyncError(f"schema {name} refers to an unknown type: {exc}") from None
    return parsed


@lru_cache(maxsize=1)
def legacy_fingerprint_forms() -> Mapping[str, str]:
    """Per schema, the canonical form earlier stocksync versions fingerprinted, where a type from another file
    stayed a bare name (four schemas differ). Records written then, in a changelog or by an older channel client,
    are still read; nothing is written with these."""
    from fastavro.schema import to_parsing_canonical_form

    raw = _read_files()
    named: dict[str, Any] = {}
    forms: dict[str, str] = {}
    pending = dict(raw)
    while pending:
        progress = False
        for name, schema in list(pending.items()):
            try:
                trial = dict(named)
                parsed = fastavro.parse_schema(schema, named_schemas=trial)
            except fastavro.schema.UnknownType:
                continue
            named.update(trial)
            forms[name] = to_parsing_canonical_form(parsed)
            del pending[name]
            progress = True
        if not progress:
            raise StocksyncError(f"schemas refer to unknown types: {sorted(pending)}")
    return forms


def history_legacy_forms() -> Mapping[str, list[tuple[str, Any]]]:
    """Per schema, the legacy canonical form of each earlier version (see legacy_fingerprint_forms: a type that
    another schema file defines kept as a bare name) with that version parsed: records an even older stocksync
    wrote with such a version's legacy fingerprint are read with it. Only versions that differ from their full
    form appear."""
    from fastavro.schema import to_parsing_canonical_form

    defined_by: dict[str, set[str]] = {}  # per schema file (by its schema's name), the named types it defines
    for file_name, file_schema in _read_files().items():
        types: dict[str, Any] = {}
        _named_types(file_schema, file_schema.get("namespace"), types)
        defined_by[file_name] = set(types)
    found: dict[str, list[tuple[str, Any]]] = {}
    for path in sorted(history_dir().glob("*.avsc")) if history_dir().is_dir() else []:
        schema = json.loads(path.read_text())
        name = _full_name(schema["name"], schema.get("namespace"))
        others = set().union(*(types for file_name, types in defined_by.items() if file_name != name))
        definitions: dict[str, Any] = {}
        bare = _referencing(schema, schema.get("namespace"), others - defined_by.get(name, set()), definitions)
        if not definitions:
            continue
        named: dict[str, Any] = {}
        for definition in definitions.values():
            fastavro.parse_schema(definition, named_schemas=named)
        form = to_parsing_canonical_form(fastavro.parse_schema(bare, named_schemas=named))
        found.setdefault(name, []).append((form, fastavro.parse_schema(schema)))
    return found


def _referencing(schema: Any, namespace: str | None, others: set[str], definitions: dict[str, Any]) -> Any:
    """`schema` with every named type defined in full that is one of `others` (a top-level schema of its own)
    replaced by its name, the definitions collected (the inverse of _standalone)."""
    if isinstance(schema, list):
        return [_referencing(branch, namespace, others, definitions) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind in _NAMED:
        namespace = schema.get("namespace", namespace)
        full = _full_name(schema["name"], namespace)
        if full in others:
            definitions[full] = {**schema, "namespace": namespace} if "." not in schema["name"] else schema
            return full
        if "fields" in schema:
            return {**schema, "fields": [{**field, "type": _referencing(field["type"], namespace, others,
                                                                         definitions)} for field in schema["fields"]]}
        return schema
    if kind == "array":
        return {**schema, "items": _referencing(schema["items"], namespace, others, definitions)}
    if kind == "map":
        return {**schema, "values": _referencing(schema["values"], namespace, others, definitions)}
    if isinstance(kind, (dict, list)):
        return {**schema, "type": _referencing(kind, namespace, others, definitions)}
    return schema


def history_dir() -> Path:
    """schemas/history/: earlier versions of schemas, each complete on its own (Avro JSON, any file name)."""
    return schemas_dir() / "history"


@lru_cache(maxsize=1)
def load_history() -> Mapping[str, list[Any]]:
    """Per schema, its earlier versions: records written with them (by an older worker, an older channel client,
    in a changelog) are read into the current schema by Avro's schema resolution."""
    found: dict[str, list[Any]] = {}
    for path in sorted(history_dir().glob("*.avsc")) if history_dir().is_dir() else []:
        schema = json.loads(path.read_text())
        found.setdefault(_full_name(schema["name"], schema.get("namespace")), []).append(
            fastavro.parse_schema(schema))
    return found


@lru_cache(maxsize=1)
def published() -> Mapping[str, Any]:
    """schemas/published.json: every fingerprint a released stocksync wrote in single-object encoding, and how
    the channel-facing records are registered with a Schema Registry (subject per record, compatibility)."""
    data: Mapping[str, Any] = json.loads((schemas_dir() / "published.json").read_text())
    return data


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    kind = schema["type"]
    return kind if isinstance(kind, str) else _type_name(kind)


_PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
               ("float", "double"), ("string", "bytes"), ("bytes", "string")}


def resolution_problems(writer: Any, reader: Any, where: str = "") -> list[str]:
    """Why data written with `writer` cannot be read with `reader` by the Avro specification's schema resolution
    ([] when it can). Both are parsed schemas (named types written out in full)."""
    w, r = _type_name(writer), _type_name(reader)
    if w == "union":
        return [p for branch in writer for p in resolution_problems(branch, reader, where)]
    if r == "union":
        options = [branch for branch in reader if not resolution_problems(writer, branch)]
        return [] if options else [f"{where or 'the record'}: {w} matches no branch of the reader's union"]
    if w != r:
        return [] if (w, r) in _PROMOTIONS else [f"{where or 'the record'}: {w} cannot be read as {r}"]
    if w in ("record", "error"):
        written = {f["name"]: f for f in writer["fields"]}
        problems = []
        for field in reader["fields"]:
            path = f"{where}.{field['name']}" if where else field["name"]
            if field["name"] in written:
                problems += resolution_problems(written[field["name"]]["type"], field["type"], path)
            elif "default" not in field:
                problems.append(f"{path}: added without a default")
        return problems
    if w == "enum":
        missing = sorted(set(writer["symbols"]) - set(reader["symbols"]))
        return [f"{where}: symbols {missing} unknown to the reader"] if missing and "default" not in reader else []
    if w == "array":
        return resolution_problems(writer["items"], reader["items"], f"{where}[]")
    if w == "map":
        return resolution_problems(writer["values"], reader["values"], f"{where}{{}}")
    if w == "fixed" and writer["size"] != reader["size"]:
        return [f"{where}: fixed size {writer['size']} read as {reader['size']}"]
    return []
