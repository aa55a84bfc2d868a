"""The reference of every setting, command and HTTP route, rendered from the code (docs/reference.md):
`python -m streams.cli.reference > docs/reference.md`. The test suite fails when the page and the code disagree."""

from __future__ import annotations

import argparse
import inspect
import typing
from typing import Any

from pydantic import SecretStr

from streams.cli.main import build_parser
from streams.settings import DEFAULT_CACHE_DIR, Settings
from streams.worker.api.routes import ROUTES, Api

WIDTH = 116  # usage lines are wrapped at this width, whatever the terminal


def render() -> str:
    return "\n".join([
        "# Reference",
        "",
        "Every setting, command and HTTP route, generated from the code (`python -m streams.cli.reference`).",
        "",
        *settings(), "", *commands(), "", *routes(), ""])


def settings() -> list[str]:
    rows = ["## Settings", "", "Every setting is read from the environment variable named here; a bad value stops the "
            "command with one line naming it.", "", "| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or ""
        choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is typing.Literal else ()
        if choices:
            meaning += " (" + ", ".join(f"`{c}`" for c in choices) + ")"
        rows.append(f"| `STOCKSYNC_{name.upper()}` | {_default(field.default)} | {meaning} |")
    return rows


def _default(value: Any) -> str:
    if value is None or isinstance(value, SecretStr):
        return "none"
    if value == "":
        return "(empty)"
    if value == DEFAULT_CACHE_DIR:
        return "`~/.cache/stocksync`"
    return f"`{value}`".replace("|", "\\|")


def commands() -> list[str]:
    lines = ["## Commands", ""]
    for name, parser in _subcommands(build_parser(), "stocksync"):
        parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
        lines += [f"### `{name}`", "", parser.description or "", "", "```", parser.format_usage().strip(), "```", ""]
    return lines[:-1]


def _subcommands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:  # noqa: SLF001 - argparse lists subcommands nowhere else
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found += _subcommands(sub, f"{prefix} {name}")
    return found


def routes() -> list[str]:
    rows = ["## HTTP routes", "", "Every worker answers them (`GET`); [the API guide](api.md) shows their answers.", "",
            "| route | what |", "|---|---|"]
    for path, method in ROUTES.items():
        doc = inspect.getdoc(getattr(Api, method)) or ""
        rows.append(f"| `GET {path}` | {' '.join(doc.split())} |")
    return rows


if __name__ == "__main__":
    print(render(), end="")
