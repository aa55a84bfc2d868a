"""Each package imports only the layers below it, and nothing at run time loads the development tools."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import streams

PACKAGE = Path(streams.__file__).parent

# What each part of the system may import from stocksync (besides itself and streams.errors).
ALLOWED = {
    "domain": set(),
    "wire": {"domain"},
    "kafka": {"domain", "wire", "settings"},
    "worker": {"domain", "wire", "kafka", "settings", "api_access"},
    "channel": {"domain", "wire", "kafka", "settings"},
    "dev": {"domain", "wire", "kafka", "channel", "settings"},
}
# The one way down: cluster selection starts the local broker, imported only when no cluster is configured.
EXCEPTIONS = {("kafka/cluster.py", "dev")}


def stocksync_imports(path: Path) -> set[str]:
    """The first part under `streams` of every stocksync module `path` imports (at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        found |= {name.split(".")[1] for name in names if name.startswith("streams.")}
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(part: str) -> None:
    allowed = ALLOWED[part] | {part, "errors"}
    for path in sorted((PACKAGE / part).rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        wrong = {name for name in stocksync_imports(path) - allowed if (relative, name) not in EXCEPTIONS}
        assert not wrong, f"streams/{relative} imports streams.{', streams.'.join(sorted(wrong))}"


def test_the_worker_and_the_channel_client_load_no_development_tool() -> None:
    code = ("import sys, streams.worker.runtime.bootstrap, streams.worker.runtime.main, streams.channel; "
            "print(sorted(m for m in sys.modules if m.startswith('streams.dev')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
