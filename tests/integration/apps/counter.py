"""A minimal faust app on stocksync's app factory: counts messages per key in a table, emits each new count."""

from __future__ import annotations

import os

from streams.settings import load_settings
from streams.worker.runtime.app import create_app

app = create_app(load_settings())
source = app.topic(os.environ["COUNTER_IN"], key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["COUNTER_OUT"], key_type=bytes, value_type=bytes,
                 key_serializer="raw", value_serializer="raw")
counts = app.Table(os.environ["COUNTER_TABLE"], default=int, key_type=bytes, value_type=int)


@app.agent(source, concurrency=1)
async def count(stream):  # type: ignore[no-untyped-def]
    async for key, _ in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=str(counts[key]).encode())
