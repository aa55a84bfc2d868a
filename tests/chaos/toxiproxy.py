"""Toxiproxy (Shopify's fault-injecting TCP proxy), built from the Go module proxy once and run beside a local
cluster: every worker reaches the brokers through its slot's proxies (streams.dev.local_kafka.LocalCluster's
proxied listeners), so one worker's links can be cut, slowed, reset or throttled while the others' are not."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streams.dev.local_kafka import LocalCluster

VERSION = "v2.7.0"  # builds with Debian 12's Go (1.19) as with newer ones
MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def fetch_toxiproxy(cache_dir: Path) -> Path:
    """The Toxiproxy server binary in `cache_dir`, built with `go install` the first time."""
    binary = cache_dir / f"toxiproxy-{VERSION}" / "server"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("network faults need Go to build Toxiproxy (go install); none is on PATH")
    binary.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([go, "install", f"{MODULE}@{VERSION}"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-mod=mod"})
    if done.returncode != 0 or not binary.is_file():
        raise RuntimeError(f"building Toxiproxy failed: {done.stderr.strip()[-2000:]}")
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Toxiproxy:
    """A Toxiproxy server and its HTTP API: a proxy per (slot, node) of the cluster."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = open(log, "ab")  # noqa: SIM115 - kept open as long as the server runs
        self.proc = subprocess.Popen([str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/version")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"Toxiproxy did not start: {log.read_text()[-1000:]}") from None
                time.sleep(0.1)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def route(self, cluster: LocalCluster) -> None:
        """A proxy for every proxied listener of the cluster: listening where the node advertises it."""
        for (listener, node), (bind, through) in sorted(cluster.proxied.items()):
            self._call("POST", "/proxies", {"name": f"{listener}-{node}", "listen": f"127.0.0.1:{through}",
                                            "upstream": f"127.0.0.1:{bind}", "enabled": True})

    def proxies(self, slot: int) -> list[str]:
        return sorted(name for name in self._call("GET", "/proxies") if name.startswith(f"SLOT{slot}-"))

    def toxic(self, slot: int, kind: str, **attributes: int) -> str:
        """Add a toxic of `kind` to both directions of every link of `slot`; its name, to take it away."""
        name = f"{kind}-{time.monotonic_ns()}"
        for proxy in self.proxies(slot):
            for stream in ("upstream", "downstream"):
                self._call("POST", f"/proxies/{proxy}/toxics", {"name": f"{name}-{stream}", "type": kind,
                                                                "stream": stream, "toxicity": 1.0,
                                                                "attributes": attributes})
        return name

    def heal(self, slot: int, name: str) -> None:
        for proxy in self.proxies(slot):
            for stream in ("upstream", "downstream"):
                try:
                    self._call("DELETE", f"/proxies/{proxy}/toxics/{name}-{stream}")
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise

    def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        self._call("POST", "/reset")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
