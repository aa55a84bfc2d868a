"""`pip install stocksync` as a channel's service does it: the channel client and the CLI with a small set of
dependencies, the demo's network inside the package, and a worker command that says which extra it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import streams

ROOT = Path(streams.__file__).resolve().parents[1]
WORKER_ONLY = {"faust-streaming", "aiokafka", "mode-streaming", "aiohttp", "prometheus-client", "rocksdict",
               "cavro", "numpy", "cryptography"}


def interpreter(minor: int) -> str | None:
    """A Python 3.`minor` on this machine that runs (pyenv's, or on the PATH), if there is one."""
    candidates = [str(p) for p in sorted((Path.home() / ".pyenv" / "versions").glob(f"3.{minor}.*/bin/python3"))]
    candidates += [found] if (found := shutil.which(f"python3.{minor}")) else []
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "import venv"], capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


def installed_slim(home: Path, python: str) -> Path:
    """A virtual environment of `python` with stocksync installed without extras."""
    subprocess.run([python, "-m", "venv", str(home)], check=True, capture_output=True, timeout=120)
    subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    return home


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This interpreter's Python, stocksync installed without extras."""
    return installed_slim(tmp_path_factory.mktemp("slim"), sys.executable)


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(home / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                          cwd=home, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})


def test_the_client_installs_without_the_workers_dependencies(slim: Path) -> None:
    frozen = run(slim, "python", "-m", "pip", "freeze").stdout.splitlines()
    installed = {line.split("==")[0].split(" @ ")[0].lower() for line in frozen}
    assert {"stocksync", "confluent-kafka", "fastavro"} <= installed
    assert not installed & WORKER_ONLY
    assert len(installed) <= 12, installed
    done = run(slim, "python", "-c", "from streams.channel import ChannelClient, Line; print(ChannelClient.__name__)")
    assert done.stdout == "ChannelClient\n", done.stderr


def test_a_worker_on_the_slim_install_says_which_extra_it_needs(slim: Path) -> None:
    for command in (["worker"], ["demo"]):
        done = run(slim, "stocksync", *command)
        assert done.returncode == 2
        assert done.stderr.startswith(f"stocksync: error: stocksync {command[0]} runs workers, which need the worker "
                                      'extra: pip install "stocksync[worker]" (faust')
        assert done.stderr.count("\n") == 1


def test_the_demo_network_ships_in_the_package(slim: Path) -> None:
    site = next((slim / "lib").glob("python3*/site-packages"))
    shipped = site / "streams" / "dev" / "network.yaml"
    assert shipped.read_text() == (ROOT / "deploy" / "network.yaml").read_text()
    done = run(slim, "stocksync", "network", "check", str(shipped))
    assert done.returncode == 0 and "valid" in done.stdout, done.stderr


@pytest.mark.parametrize("minor", [12, 13])
def test_the_client_installs_and_round_trips_a_movement_on_each_declared_python(minor: int, tmp_path: Path) -> None:
    python = interpreter(minor)
    if python is None:
        pytest.skip(f"no Python 3.{minor} on this machine")
    home = installed_slim(tmp_path / "venv", python)
    code = ("from streams.domain import Kind, Movement; from streams.wire.codec import default_codec; "
            "from streams.wire.records import movement_from_record, movement_to_record; "
            "from streams.wire.schemas import Schema; import sys; "
            "m = Movement(Kind.SALE, 'e-1', 'web', 'SKU-1', 'store-a', 2, 1_700_000_000_000); c = default_codec(); "
            "back = movement_from_record(c.decode_as(c.encode(Schema.MOVEMENT, movement_to_record(m)), "
            "Schema.MOVEMENT)[1], 'web'); print(sys.version_info[:2], back == m)")
    done = run(home, "python", "-c", code)
    assert done.stdout == f"(3, {minor}) True\n", done.stderr
