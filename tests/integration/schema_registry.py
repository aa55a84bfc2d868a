"""A Confluent-compatible Schema Registry for the tests, in the test process, over HTTP: the worker processes the
tests start reach it as they would a real one. No registry server installs from the package registries here (and
confluent-kafka's mock:// registry lives inside one process), so this serves the part of the registry's REST API
that confluent-kafka's client and serializers use: register, look up, fetch by id, subject compatibility, with
compatibility checked by Avro's schema resolution. It can be stopped and started again on its port, its schemas
kept, to be a registry out of reach for a while."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from streams.wire.schemas import resolution_problems
from tests.integration.json_http import JsonHttpService

_CHECKS = {"BACKWARD": (True, False), "FORWARD": (False, True), "FULL": (True, True), "NONE": (False, False)}


class SchemaRegistryServer(JsonHttpService):
    content_type = "application/vnd.schemaregistry.v1+json"

    def __init__(self) -> None:
        super().__init__()
        self.schemas: dict[int, str] = {}  # id -> the schema text first registered with it
        self.ids: dict[str, int] = {}  # canonical form -> id (the same schema under any subject has one id)
        self.subjects: dict[str, list[int]] = {}  # subject -> its versions' ids, oldest first
        self.compatibility: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        return self.handle(method, path, json.loads(body) if body else {})

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register as a channel's serializer would (for a test's own records)."""
        status, answer = self.handle("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})
        assert status == 200 and isinstance(answer, dict), answer
        return int(answer["id"])

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | list[Any]]:
        with self.lock:
            self.requests.append((method, path))
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                return self._register(m[1], body["schema"]) if method == "POST" else \
                    (200, list(range(1, len(self.subjects.get(m[1], [])) + 1)))
            if (m := re.fullmatch(r"/subjects/([^/]+)", path)) and method == "POST":
                return self._lookup(m[1], body["schema"])
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                text = self.schemas.get(int(m[1]))
                return (200, {"schema": text}) if text else _error(404, 40403, "Schema not found")
            if m := re.fullmatch(r"/config/([^/]+)", path):
                if method == "PUT":
                    level = body["compatibility"]
                    if level.removesuffix("_TRANSITIVE") not in _CHECKS:
                        return _error(422, 42203, f"Invalid compatibility level {level}")
                    self.compatibility[m[1]] = level
                    return 200, {"compatibility": level}
                level = self.compatibility.get(m[1])
                return (200, {"compatibilityLevel": level}) if level else \
                    _error(404, 40408, f"Subject '{m[1]}' does not have subject-level compatibility configured")
            if path == "/subjects":
                return 200, sorted(self.subjects)
            return _error(404, 404, f"no route {method} {path}")

    def _register(self, subject: str, text: str) -> tuple[int, dict[str, Any]]:
        try:
            parsed = fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - any unparsable schema is the caller's error
            return _error(422, 42201, f"Invalid schema: {exc}")
        form = to_parsing_canonical_form(parsed)
        versions = self.subjects.setdefault(subject, [])
        known = self.ids.get(form)
        if known is not None and known in versions:
            return 200, {"id": known}
        level = self.compatibility.get(subject, "BACKWARD")
        backward, forward = _CHECKS[level.removesuffix("_TRANSITIVE")]
        earlier = versions if level.endswith("_TRANSITIVE") else versions[-1:]
        for schema_id in earlier:
            old = fastavro.parse_schema(json.loads(self.schemas[schema_id]))
            problems = (resolution_problems(old, parsed) if backward else []) + \
                (resolution_problems(parsed, old) if forward else [])
            if problems:
                return _error(409, 409, f"Schema being registered is incompatible with an earlier schema for "
                                        f"subject \"{subject}\" ({level}): {'; '.join(problems)}")
        if known is None:
            known = self.ids[form] = max(self.schemas, default=0) + 1
            self.schemas[known] = text
        versions.append(known)
        return 200, {"id": known}

    def _lookup(self, subject: str, text: str) -> tuple[int, dict[str, Any]]:
        if subject not in self.subjects:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        form = to_parsing_canonical_form(fastavro.parse_schema(json.loads(text)))
        schema_id = self.ids.get(form)
        if schema_id is None or schema_id not in self.subjects[subject]:
            return _error(404, 40403, "Schema not found")
        return 200, {"subject": subject, "id": schema_id, "version": self.subjects[subject].index(schema_id) + 1,
                     "schema": self.schemas[schema_id]}


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error_code": code, "message": message}
