"""The local broker says what is missing before it tries to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.dev.local_kafka import LocalKafka
from streams.errors import BrokerError


def test_missing_java_or_maven_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn can be found
    broker = LocalKafka(home=tmp_path / "home", workdir=tmp_path / "broker")
    with pytest.raises(BrokerError, match=r"'java' not found on PATH: install Java 17 or newer"):
        broker.start()
