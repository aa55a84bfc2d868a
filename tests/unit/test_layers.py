"""Each package imports only the layers below it, each room of the worker only the rooms below it, the client
libraries only where their seam is, and nothing at run time loads the development tools."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import streams

PACKAGE = Path(streams.__file__).parent

# What each part of the system may import from stocksync (besides itself and streams.errors). The modules at the
# top (settings, security, api_access) are the base every package stands on.
BASE = {"settings", "security", "api_access"}
ALLOWED = {
    "domain": set(),
    "wire": {"domain"},
    "security": set(),
    "api_access": set(),
    "settings": {"security", "api_access"},
    "kafka": {"domain", "wire"} | BASE,
    "control": {"domain", "wire", "kafka"} | BASE,
    "worker": {"domain", "wire", "kafka", "control"} | BASE,
    "channel": {"domain", "wire", "kafka", "control"} | BASE,
    "dev": {"domain", "wire", "kafka", "control", "channel"} | BASE,
    "cli": {"domain", "wire", "kafka", "control", "channel", "dev", "worker"} | BASE,
}
# The rooms of the worker, each with the rooms it may import (streams/worker/__init__.py says the same).
ROOMS = {
    "ops": set(),
    "state": {"ops"},
    "reference": {"ops"},
    "processing": {"reference", "state", "ops"},
    "flow": {"processing", "reference", "state", "ops"},
    "api": {"flow", "reference", "state", "ops"},
    "runtime": {"api", "flow", "processing", "reference", "state", "ops"},
}
# Where each client library may be imported: faust and mode run the worker's runtime; RocksDB sits behind the state
# room's store protocol; the Kafka clients behind streams.kafka.
LIBRARIES = {
    "faust": ("worker/runtime/",),
    "mode": ("worker/runtime/",),
    "rocksdict": ("worker/state/",),
    "confluent_kafka": ("kafka/",),
    "aiokafka": ("kafka/aio.py", "worker/runtime/"),
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports (at any depth), by its full dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def stocksync_imports(path: Path, depth: int = 1) -> set[str]:
    """The parts under `streams` (`depth` levels of them) of every stocksync module `path` imports."""
    return {".".join(name.split(".")[1:1 + depth]) for name in imported_modules(path) if name.startswith("streams.")}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if part_of(p) != "__init__")


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(part: str) -> None:
    allowed = ALLOWED[part] | {part, "errors"}
    paths = [p for p in sources() if part_of(p) == part]
    assert paths, f"no module of streams/{part}"
    for path in paths:
        wrong = stocksync_imports(path) - allowed
        assert not wrong, f"streams/{path.relative_to(PACKAGE)} imports streams.{', streams.'.join(sorted(wrong))}"


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_a_worker_room_imports_only_the_rooms_below_it(room: str) -> None:
    allowed = ROOMS[room] | {room}
    paths = sorted((PACKAGE / "worker" / room).glob("*.py"))
    assert paths, f"no room streams/worker/{room}"
    for path in paths:
        rooms = {name.split(".")[1] for name in stocksync_imports(path, depth=2) if name.startswith("worker.")}
        wrong = rooms - allowed
        assert not wrong, f"streams/worker/{room}/{path.name} imports the worker's {', '.join(sorted(wrong))}"


def test_every_worker_module_is_in_a_room_that_says_what_it_owns() -> None:
    worker = PACKAGE / "worker"
    assert {p.name for p in worker.glob("*.py")} == {"__init__.py"}
    assert {p.name for p in worker.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ROOMS)
    for room in ROOMS:
        docstring = ast.get_docstring(ast.parse((worker / room / "__init__.py").read_text()))
        assert docstring, f"streams/worker/{room} has no docstring saying what it owns"


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_client_library_is_imported_only_at_its_seam(library: str) -> None:
    for path in sources():
        relative = path.relative_to(PACKAGE).as_posix()
        if any(name == library or name.startswith(library + ".") for name in imported_modules(path)):
            assert relative.startswith(LIBRARIES[library]), f"streams/{relative} imports {library}"


def test_the_cli_the_worker_and_the_channel_client_load_no_development_tool() -> None:
    code = ("import sys, streams.cli, streams.worker.runtime.bootstrap, streams.worker.runtime.main, streams.channel; "
            "print(sorted(m for m in sys.modules if m.startswith('streams.dev')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
