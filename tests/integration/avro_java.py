"""Apache Avro's Java implementation, fetched by Maven and run by Java, as an integrator's code would use it."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

from fastavro import json_reader, json_writer

from streams.dev.local_kafka import maven_dependencies
from streams.wire.codec import default_codec
from streams.wire.schemas import legacy_fingerprint_forms, schemas_dir

HERE = Path(__file__).resolve().parent / "java"
AVRO_VERSION = "1.12.2"


def fetch_avro_java(cache_dir: Path) -> Path:
    """Apache Avro's jars (and their dependencies) in cache_dir, fetched once with Maven."""
    libs = cache_dir / f"avro-java-{AVRO_VERSION}" / "libs"
    libs.parent.mkdir(parents=True, exist_ok=True)
    return maven_dependencies(HERE / "pom.xml", libs, {"avro.version": AVRO_VERSION}, f"Avro {AVRO_VERSION}")


class AvroJava:
    """Runs AvroInterop.java against schemas/ (every file after the files whose types it uses)."""

    def __init__(self, libs: Path) -> None:
        self.libs = libs
        self.files = [str(schemas_dir() / f"{name.rsplit('.', 1)[1]}.avsc") for name in legacy_fingerprint_forms()]
        self.codec = default_codec()

    def run_channel_example(self, kafka_libs: Path, bootstrap: str, prefix: str, sku: str, event_id: str,
                            registry: str | None = None) -> None:
        """The channel guide's Java channel (Kafka's and Avro's own Java libraries) reports a receipt; with
        `registry`, the one that frames it for a Schema Registry."""
        example, extra = ("ChannelExample", []) if registry is None else ("RegistryChannelExample", [registry])
        result = subprocess.run(["java", "-cp", f"{self.libs}/*:{kafka_libs}/*", str(HERE / f"{example}.java"),
                                 bootstrap, prefix, str(schemas_dir()), *extra, sku, event_id], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{example} failed: {result.stderr[-3000:]}"

    def _run(self, args: list[str], lines: list[str]) -> list[str]:
        result = subprocess.run(["java", "-cp", f"{self.libs}/*", str(HERE / "AvroInterop.java"), *args,
                                 *self.files], input="".join(f"{line}\n" for line in lines), capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"AvroInterop {args[0]} failed: {result.stderr[-3000:]}"
        # "\n" only: a JSON string may hold U+0085 or U+2028 unescaped (bytes of a timestamp), and splitlines()
        # would cut a record there.
        return result.stdout.removesuffix("\n").split("\n") if result.stdout else []

    def fingerprints(self) -> dict[str, str]:
        """Per schema, the 8 bytes (hex) that Avro's BinaryMessageEncoder writes after the C3 01 marker."""
        return dict(line.split(" ") for line in self._run(["fingerprints"], []))

    def encode(self, schema: str, records: list[dict[str, Any]]) -> list[bytes]:
        """Records encoded by Java's BinaryMessageEncoder (given to it in Avro's JSON encoding)."""
        text = io.StringIO()
        json_writer(text, self.codec.schemas[schema], records)
        lines = text.getvalue().removesuffix("\n").split("\n")
        return [bytes.fromhex(line) for line in self._run(["encode", schema], lines)]

    def decode(self, values: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
        """What Java's BinaryMessageDecoder reads from each value: the schema's name and the record."""
        decoded = []
        for line in self._run(["decode"], [value.hex() for value in values]):
            name, _, text = line.partition("\t")
            assert name in self.codec.schemas, f"Java could not decode a record: {line[:200]}"
            record = next(json_reader(io.StringIO(text), self.codec.schemas[name]))
            assert isinstance(record, dict), text
            decoded.append((name, record))
        return decoded
