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
    SKU_STOCK_STATE = "stocksync.SkuStockState"
    INPUT_OFFSETS = "stocksync.InputOffsets"
    POSITION_STATE = "stocksync.PositionState"
    LEDGER_ENTRY = "stocksync.LedgerEntry"
    ATS_UPDATE = "stocksync.AtsUpdate"
    RESERVATION_DECISION = "stocksync.ReservationDecision"
    DEAD_LETTER = "stocksync.DeadLetter"
    NETWORK_CONFIG = "stocksync.NetworkConfig"


def schemas_dir() -> Path:
    """schemas/, which the package carries as streams/schemas (STOCKSYNC_SCHEMAS_DIR overrides)."""
    override = os.environ.get("STOCKSYNC_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


@lru_cache(maxsize=1)
def load_schemas() -> Mapping[str, Any]:
    """Every schema in schemas/, parsed, by full name; files may refer to types named in other files."""
    raw = {path.stem: json.loads(path.read_text()) for path in sorted(schemas_dir().glob("*.avsc"))}
    if not raw:
        raise StocksyncError(f"no Avro schemas found in {schemas_dir()}")
    named: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    pending = dict(raw)
    while pending:
        progress = False
        for stem, schema in list(pending.items()):
            try:
                trial = dict(named)
                result = fastavro.parse_schema(schema, named_schemas=trial)
            except fastavro.schema.UnknownType:
                continue
            named.update(trial)
            parsed[f"{schema['namespace']}.{schema['name']}"] = result
            del pending[stem]
            progress = True
        if not progress:
            raise StocksyncError(f"schemas refer to unknown types: {sorted(pending)}")
    return parsed
