"""`pip install stocksync` as a channel's service does it: the channel client and the CLI with a small set of
dependencies, the demo's network inside the package, and a worker command that says which extra it needs."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

import streams

ROOT = Path(streams.__file__).resolve().parents[1]
WORKER_ONLY = {"faust-streaming", "aiokafka", "mode-streaming", "aiohttp", "prometheus-client", "rocksdict",
               "cavro", "numpy", "cryptography"}


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with stocksync installed without extras."""
    home = tmp_path_factory.mktemp("slim")
    venv.create(home, with_pip=True)
    subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)], check=True,
                   capture_output=True, timeout=600)
    return home


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
