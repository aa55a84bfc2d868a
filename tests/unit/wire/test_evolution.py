"""Schema evolution: a new optional field is read by an old reader and the other way round, a breaking change is
named by the compatibility check, and every schema published is either the current one or kept in
schemas/history/ and still readable (the rules: README, "Schema evolution")."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import fastavro
import pytest

from streams.domain import Kind, Movement, Network
from streams.wire.codec import DecodeError, SingleObjectCodec, crc64_avro
from streams.wire.records import movement_to_record
from streams.wire.schemas import (
    Schema,
    history_legacy_forms,
    legacy_fingerprint_forms,
    load_history,
    load_schemas,
    resolution_problems,
    schemas_dir,
)

PUBLISHED = schemas_dir() / "published.json"
_ONE_STORE = Network.from_dict({"locations": [{"id": "s1", "kind": "store", "latitude": 52.5, "longitude": 13.4}],
                                "channels": [{"id": "pos-1", "locations": ["s1"]}]})


def with_field(schema: Any, field: dict[str, Any]) -> Any:
    changed = copy.deepcopy(fastavro.schema.to_parsing_canonical_form(schema))
    parsed = json.loads(changed)
    parsed["fields"].append(field)
    return fastavro.parse_schema(parsed)


def a_movement() -> dict[str, Any]:
    return movement_to_record(Movement(Kind.SALE, "e-1", "pos-1", "SKU-1", "s1", 2, 1_700_000_000_000))


def test_a_new_optional_field_is_read_by_an_old_reader_and_the_other_way_round() -> None:
    old = dict(load_schemas())
    new = {**old, Schema.MOVEMENT: with_field(old[Schema.MOVEMENT],
                                              {"name": "listing_id", "type": ["null", "string"], "default": None})}
    old_side = SingleObjectCodec(old, history={Schema.MOVEMENT: [new[Schema.MOVEMENT]]})
    new_side = SingleObjectCodec(new, history={Schema.MOVEMENT: [old[Schema.MOVEMENT]]})
    record = a_movement()

    name, read_by_new = new_side.decode(old_side.encode(Schema.MOVEMENT, record))  # new reader, old writer
    assert name == Schema.MOVEMENT and read_by_new == {**record, "listing_id": None}

    written = new_side.encode(Schema.MOVEMENT, {**record, "listing_id": "MKT-778"})
    assert written[2:10] != old_side.encode(Schema.MOVEMENT, record)[2:10]  # another fingerprint
    name, read_by_old = old_side.decode(written)  # old reader, new writer: the new field is skipped
    assert name == Schema.MOVEMENT and read_by_old == record
    assert resolution_problems(old[Schema.MOVEMENT], new[Schema.MOVEMENT]) == []
    assert resolution_problems(new[Schema.MOVEMENT], old[Schema.MOVEMENT]) == []


def test_a_breaking_change_is_named_and_its_records_are_refused_cleanly() -> None:
    old = dict(load_schemas())
    required = with_field(old[Schema.MOVEMENT], {"name": "listing_id", "type": "string"})
    assert resolution_problems(old[Schema.MOVEMENT], required) == ["listing_id: added without a default"]
    retyped = json.loads(fastavro.schema.to_parsing_canonical_form(old[Schema.MOVEMENT]))
    quantity = next(f for f in retyped["fields"] if f["name"] == "quantity")
    quantity["type"] = "string"
    assert resolution_problems(old[Schema.MOVEMENT], fastavro.parse_schema(retyped)) == \
        ["quantity: long cannot be read as string"]
    # A reader that was wrongly given such a writer schema dead-letters the record; it does not crash.
    reader = SingleObjectCodec({**old, Schema.MOVEMENT: required}, history={Schema.MOVEMENT: [old[Schema.MOVEMENT]]})
    with pytest.raises(DecodeError) as refused:
        reader.decode(SingleObjectCodec(old).encode(Schema.MOVEMENT, a_movement()))
    assert refused.value.reason == "schema_violation"


def fingerprint(schema: Any) -> str:
    return crc64_avro(fastavro.schema.to_parsing_canonical_form(schema).encode()).to_bytes(8, "little").hex()


def test_every_published_schema_version_is_current_or_kept_and_still_readable() -> None:
    """schemas/published.json lists every fingerprint ever written by a released stocksync. Changing a schema
    fails here until its previous version is copied into schemas/history/ and the new fingerprint is added,
    and both directions resolve (old readers and new readers meet on the topics during a rolling upgrade)."""
    published = json.loads(PUBLISHED.read_text())["single_object_fingerprints"]
    current, history = load_schemas(), load_history()
    legacy = {name: crc64_avro(form.encode()).to_bytes(8, "little").hex()
              for name, form in legacy_fingerprint_forms().items()}
    kept_legacy = {name: {crc64_avro(form.encode()).to_bytes(8, "little").hex() for form, _ in forms}
                   for name, forms in history_legacy_forms().items()}
    assert set(published) == set(current)
    for name, schema in current.items():
        kept = {fingerprint(v) for v in history.get(name, [])}
        assert set(published[name]) == {fingerprint(schema), legacy[name]} | kept | kept_legacy.get(name, set()), (
            f"{name}: schemas/published.json and schemas/history/ do not hold every version "
            f"(current {fingerprint(schema)}): keep the previous version in schemas/history/ and list the new one")
        for earlier in history.get(name, []):
            assert resolution_problems(earlier, schema) == [], f"{name}: new readers cannot read old records"
            assert resolution_problems(schema, earlier) == [], f"{name}: old readers cannot read new records"


def test_a_batch_an_old_sdk_wrote_with_the_legacy_fingerprint_is_read_with_the_version_it_was_written_with(
        ) -> None:
    """The first SDKs fingerprinted MovementBatch with Movement as a bare name: the same fingerprint as the current
    schema's legacy form, though Movement has gained fields since. Read with the current schema, its bytes would
    be misread; read with the kept first version, they resolve."""
    first = next(v for v in load_history()[Schema.MOVEMENT_BATCH] if "latitude" not in json.dumps(v))
    legacy_form = next(form for form, _ in history_legacy_forms()[Schema.MOVEMENT_BATCH])
    old = {k: v for k, v in a_movement().items() if k not in ("latitude", "longitude", "mode")}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, first, {"movements": [old, {**old, "event_id": "e-2"}]})
    data = b"\xc3\x01" + crc64_avro(legacy_form.encode()).to_bytes(8, "little") + body.getvalue()
    name, record = SingleObjectCodec().decode(data)
    assert name == Schema.MOVEMENT_BATCH
    assert [m["event_id"] for m in record["movements"]] == ["e-1", "e-2"]
    assert all(m["latitude"] is None and m["mode"] is None for m in record["movements"])


def test_a_sku_head_an_older_worker_wrote_is_read_with_no_recent_sales() -> None:
    """A changelog written before the sales rate existed: its heads (with either fingerprint the older worker
    used) are read with no sales, and the SKU gains them from its next sale."""
    from streams.domain import SkuStock
    from streams.domain.history import MemoryRecords
    from streams.wire.records import head_to_record, stock_from_head

    older = next(v for v in load_history()[Schema.SKU_HEAD] if "recent_sales" not in json.dumps(v))
    stock = SkuStock("SKU-1")
    stock.apply(Movement(Kind.SALE, "e-1", "pos-1", "SKU-1", "s1", 2, 1_700_000_000_000), _ONE_STORE,
                1_700_000_000_000)
    record = {k: v for k, v in head_to_record(stock).items() if k not in ("sales_day", "recent_sales")}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, older, record)
    full = fingerprint(older)
    bare = next(crc64_avro(form.encode()).to_bytes(8, "little").hex()
                for form, _ in history_legacy_forms()[Schema.SKU_HEAD])
    for written_with in (full, bare):
        data = b"\xc3\x01" + bytes.fromhex(written_with) + body.getvalue()
        name, read = SingleObjectCodec().decode(data)
        assert name == Schema.SKU_HEAD
        again = stock_from_head(read, MemoryRecords())
        assert again.positions == stock.positions and again.sales.units == {} and stock.sales.units == {"s1": [2]}
