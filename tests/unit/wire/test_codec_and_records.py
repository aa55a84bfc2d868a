"""Avro on the wire: single-object encoding per the spec, and code that cannot drift from schemas/."""

from __future__ import annotations

from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from streams.domain import Kind, Network, SkuStock, StockRules
from streams.domain.history import MemoryRecords
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from streams.wire.codec import MARKER, DecodeError, crc64_avro, default_codec
from streams.wire.records import (
    HISTORY_SCHEMAS,
    head_to_record,
    history_from_record,
    history_to_record,
    movement_from_record,
    movement_to_record,
    network_from_record,
    network_to_record,
    stock_from_head,
    stock_from_old_state,
)
from streams.wire.schemas import Schema, legacy_fingerprint_forms
from tests.unit.domain.helpers import NETWORK, NOW, mv, recorded_deltas, remembered, same_state


def test_crc64_avro_matches_the_spec_and_fastavro() -> None:
    # The Avro specification's test vector: the fingerprint of "null".
    assert crc64_avro(b'"null"') == 7195948357588979594
    codec = default_codec()
    for name, schema in codec.schemas.items():
        canonical = to_parsing_canonical_form(schema)
        # fastavro spells the fingerprint as its little-endian bytes, the order the header carries it in.
        assert codec.fingerprint(name).to_bytes(8, "little").hex() == fingerprint(canonical, "CRC-64-AVRO"), name


def test_single_object_layout() -> None:
    codec = default_codec()
    data = codec.encode(Schema.MOVEMENT, movement_to_record(mv(Kind.SALE, quantity=2)))
    assert data[:2] == MARKER
    assert data[2:10] == codec.fingerprint(Schema.MOVEMENT).to_bytes(8, "little")


def test_every_registry_schema_exists() -> None:
    schemas = default_codec().schemas
    registry = TopicRegistry(load_settings())
    assert {spec.value_schema for spec in registry.all(["web"])} <= set(schemas)


def test_movement_record_fields_are_the_schema_fields() -> None:
    schema = default_codec().schemas[Schema.MOVEMENT]
    record = movement_to_record(mv(Kind.SALE))
    assert set(record) == {field["name"] for field in schema["fields"]}


@given(st.sampled_from(list(Kind)), st.integers(1, 1000), st.booleans())
def test_movement_round_trip(kind: Kind, quantity: int, resellable: bool) -> None:
    extra: dict[str, Any] = {}
    if kind in (Kind.TRANSFER_OUT, Kind.TRANSFER_IN):
        extra = {"other_location": "store-a", "transfer_id": "t1"}
    if kind.value.startswith("reservation"):
        extra = {"reservation_id": "r1", "expires_at": 10_000 if kind is Kind.RESERVATION_PLACED else None}
    if kind is Kind.ADJUSTMENT:
        extra = {"reason": "damage"}
    movement = mv(kind, quantity=quantity, resellable=resellable, **extra)
    codec = default_codec()
    name, record = codec.decode(codec.encode(Schema.MOVEMENT, movement_to_record(movement)))
    assert movement_from_record(record, movement.channel) == movement


def test_stock_and_network_round_trip_through_avro() -> None:
    stock = SkuStock("SKU-1")
    for m in (mv("receipt", quantity=5, location="store-a"), mv("count", quantity=4, at=50),
              mv("transfer_out", quantity=1, location="store-a", other_location="wh-1", transfer_id="t"),
              mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r", expires_at=NOW + 5),
              mv("sale", quantity=2, location="store-b", at=60)):
        stock.apply(m, NETWORK, NOW)
    assert stock.sales.units == {"store-b": [2]}
    codec = default_codec()
    records = MemoryRecords()
    copied = stock_from_head(codec.decode(codec.encode(Schema.SKU_HEAD, head_to_record(stock)))[1], records)
    assert copied == stock
    kinds = set()
    for key, value in stock.records.scan(""):
        name, record = codec.decode(codec.encode(*history_to_record(value)))
        assert history_from_record(name, record) == value
        kinds.add(name)
        records.put(key, value)
    assert kinds == set(HISTORY_SCHEMAS)
    assert same_state(copied, stock)
    wire = codec.encode(Schema.NETWORK_CONFIG, network_to_record(NETWORK, NOW))
    assert network_from_record(codec.decode(wire)[1]) == NETWORK
    levelled = Network.from_dict({**NETWORK.to_dict(), "sales_window_days": 7, "stock_levels": [
        {"kind": "store", "minimum_days": 1.5, "target_days": 7}, {"location": "wh-1", "minimum": 2, "target": 9}]})
    wire = codec.encode(Schema.NETWORK_CONFIG, network_to_record(levelled, NOW))
    assert network_from_record(codec.decode(wire)[1]) == levelled and levelled.sales_window_days == 7


def old_state(stock: SkuStock) -> dict[str, Any]:
    """The record an earlier version wrote for a SKU (SkuStockState): everything in one value."""
    deltas = recorded_deltas(stock)
    return {"sku": stock.sku, "version": stock.version, "watermark": stock.watermark, "floor": stock.floor,
            "positions": head_to_record(stock)["positions"],
            "seen": "\n".join(f"{key}\t{e.at}\t{e.result}" for key, e in remembered(stock).items()),
            "deltas": {loc: "\n".join(f"{t}\t{key}\t{d}" for t, key, d in entries) for loc, entries in deltas.items()},
            "reservations": [history_to_record(r)[1] for r in stock.open_reservations()],
            "transfers": [{"transfer_id": key.removeprefix("t:"), **history_to_record(t)[1]}
                          for key, t in stock.records.scan("t:")],
            "unconfirmed_ledger": {}}


def test_a_sku_stored_by_an_earlier_version_is_converted() -> None:
    stock = SkuStock("SKU-1")
    for m in (mv("receipt", quantity=5, location="store-a", at=10), mv("sale", quantity=1, location="store-a", at=20),
              mv("transfer_out", quantity=1, location="store-a", other_location="wh-1", transfer_id="t", at=30),
              mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r", expires_at=NOW + 5, at=40)):
        stock.apply(m, NETWORK, NOW)
    codec = default_codec()
    name, record = codec.decode(codec.encode(Schema.SKU_STOCK_STATE, old_state(stock)))
    assert name == Schema.SKU_STOCK_STATE
    converted = stock_from_old_state(record, MemoryRecords(), StockRules().horizon_ms // 64)
    assert same_state(converted, stock)
    # It goes on as if it had never been stored otherwise: a count reconciles the deltas it brought along.
    for one in (stock, converted):
        one.apply(mv("count", quantity=10, location="store-a", at=15, event_id="c"), NETWORK, NOW)
    assert same_state(converted, stock) and converted.position("store-a").on_hand == 10 - 1 - 1


@pytest.mark.parametrize(("data", "reason"), [
    (b"plain text", "not_avro"),
    (MARKER + bytes(8) + b"\x00", "unknown_schema"),
])
def test_decode_errors_have_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        default_codec().decode(data)
    assert caught.value.reason == reason


def test_truncated_body_is_a_schema_violation() -> None:
    codec = default_codec()
    data = codec.encode(Schema.MOVEMENT, movement_to_record(mv(Kind.SALE)))
    with pytest.raises(DecodeError) as caught:
        codec.decode(data[:13])
    assert caught.value.reason == "schema_violation"


def test_bytes_after_the_record_are_a_schema_violation() -> None:
    codec = default_codec()
    data = codec.encode(Schema.MOVEMENT, movement_to_record(mv(Kind.SALE)))
    with pytest.raises(DecodeError, match="3 bytes after the end of the record") as caught:
        codec.decode(data + b"\x02\x04\x06")
    assert caught.value.reason == "schema_violation"


def test_schemas_parse_with_plain_fastavro() -> None:
    # Any Avro library can read them: each file parses on its own once the types it names are known.
    named: dict[str, Any] = {}
    for name in ("Movement", "MovementBatch", "PositionFigures", "PositionState", "ReservationDecision"):
        fastavro.parse_schema(fastavro.schema.load_schema(f"schemas/{name}.avsc", named_schemas=named),
                              named_schemas=named)


def test_records_written_with_the_fingerprints_of_older_versions_are_still_read() -> None:
    codec = default_codec()
    held = {"channel": "web", "reservation_id": "r-1", "parts": [{"location": "w1", "quantity": 2}],
            "expires_at": 1_700_000_900_000, "placed_at": 1_700_000_000_000}
    data = codec.encode(Schema.HELD_RESERVATION, held)
    old_form = legacy_fingerprint_forms()[Schema.HELD_RESERVATION]
    old = MARKER + crc64_avro(old_form.encode()).to_bytes(8, "little") + data[10:]
    assert old[:10] != data[:10]  # HeldReservation refers to Hold: its fingerprint changed
    assert codec.decode(old) == codec.decode(data) == (Schema.HELD_RESERVATION, held)
