"""streams/domain stays pure: no Kafka, faust or other I/O library is imported by it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import streams.domain

FORBIDDEN = {"faust", "mode", "aiokafka", "confluent_kafka", "kafka", "fastavro", "avro", "aiohttp", "requests",
             "prometheus_client", "yaml", "socket", "asyncio"}
DOMAIN = Path(streams.domain.__file__).parent


def test_no_forbidden_import_in_source() -> None:
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                if name.startswith("streams.") and not name.startswith("streams.domain"):
                    assert name == "streams.errors", f"{path.name} imports wiring module {name}"


def test_importing_the_domain_loads_no_kafka_or_faust() -> None:
    code = f"import sys, streams.domain; print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
