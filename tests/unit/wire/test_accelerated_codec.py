"""cavro, where it is installed, writes every record and reads back a worker's own: for any record of any schema it
must give fastavro's bytes and read fastavro's bytes into fastavro's values, or it would change the wire."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.wire.codec import DecodeError, SingleObjectCodec, default_codec
from streams.wire.schemas import Schema

pytest.importorskip("cavro")

FAST = SingleObjectCodec(accelerated=True)
PLAIN = SingleObjectCodec(accelerated=False)

LONGS = st.integers(-(2**63), 2**63 - 1)
PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(), "boolean": st.booleans(), "int": st.integers(-(2**31), 2**31 - 1), "long": LONGS,
    "float": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False),
    "string": st.text(max_size=12), "bytes": st.binary(max_size=12),
}


def values(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value of an Avro schema as fastavro parsed it (a named type's later uses are its name)."""
    if isinstance(schema, str):
        return PRIMITIVES[schema] if schema in PRIMITIVES else st.deferred(lambda: values(named[schema], named))
    if isinstance(schema, list):
        return st.one_of([values(branch, named) for branch in schema])
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        named[schema["name"]] = schema
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"], named) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(values(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=6), values(schema["values"], named), max_size=3)
    return values(kind, named)


@st.composite
def records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(PLAIN.schemas)))
    return name, draw(values(PLAIN.schemas[name], {}))


@settings(max_examples=400)
@given(records())
def test_cavro_writes_fastavros_bytes_and_reads_them_into_fastavros_values(drawn: tuple[str, dict[str, Any]]) -> None:
    name, record = drawn
    data = PLAIN.encode(name, record)
    assert FAST.encode(name, record) == data
    assert FAST.decode_stored(data, name) == PLAIN.decode_as(data, name)


def test_the_accelerated_codec_is_the_default_where_cavro_is_installed() -> None:
    assert default_codec().fast.keys() == default_codec().schemas.keys()


def test_a_value_cavro_refuses_is_written_as_fastavro_writes_it() -> None:
    # fastavro writes a float into a long (truncated); cavro refuses it. The accelerator must not change what is
    # accepted: fastavro decides then.
    record = {"at": 1.0, "result": "applied"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, PLAIN.schemas[Schema.SEEN_EVENT], record)
    assert FAST.encode(Schema.SEEN_EVENT, record) == PLAIN.headers[Schema.SEEN_EVENT] + body.getvalue()


def test_a_stored_record_read_back_is_checked_like_any_other() -> None:
    data = FAST.encode(Schema.SEEN_EVENT, {"at": 5, "result": "applied"})
    with pytest.raises(DecodeError) as truncated:
        FAST.decode_stored(data[:11], Schema.SEEN_EVENT)
    assert truncated.value.reason == "schema_violation"
    with pytest.raises(DecodeError) as wrong:
        FAST.decode_stored(data, Schema.SKU_HEAD)
    assert wrong.value.reason == "wrong_schema"
