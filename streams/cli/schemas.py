"""`stocksync schemas`: register the channel-facing schemas with the Schema Registry, or show them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from streams.errors import ConfigError
from streams.kafka.schema_registry import (
    RegistryCodec,
    codec_for,
    registry_compatibility,
    registry_subjects,
    schema_text,
)
from streams.settings import Settings
from streams.wire.schemas import load_schemas


def add_parser(commands: Any) -> None:
    schemas = commands.add_parser(
        "schemas", help="register stocksync's schemas with the Schema Registry, or show them",
        description="register: every record channels and operators read or write (schemas/published.json), under "
                    "its full name as subject (RecordNameStrategy), with the subject's compatibility set where it "
                    "has none; prints each subject's schema id as JSON. Needs STOCKSYNC_SCHEMA_REGISTRY_URL. "
                    "show: each subject and its schema, as registered (no registry needed).")
    schemas.add_argument("action", choices=["register", "show"])
    schemas.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "show":
        schemas = load_schemas()
        print(json.dumps({"compatibility": registry_compatibility(),
                          "subjects": {subject: json.loads(schema_text(schemas[name]))
                                       for name, subject in registry_subjects().items()}}, indent=2))
        return 0
    codec = codec_for(settings.model_copy(update={"schema_registry_auto_register": True}))
    if not isinstance(codec, RegistryCodec):
        raise ConfigError("STOCKSYNC_SCHEMA_REGISTRY_URL: not set; schemas register needs the registry's address")
    ids = codec.prepare()
    print(json.dumps({registry_subjects()[name]: schema_id for name, schema_id in ids.items()}, indent=2))
    return 0
