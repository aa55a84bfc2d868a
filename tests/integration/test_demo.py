"""The README's main job: `stocksync demo` shows stock moving (in the terminal, and as tables and charts on its
web page, loaded in a real headless browser) and Ctrl-C leaves nothing running. One demo for the module; the
tests run in the order written, Ctrl-C last."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port, free_ports, repo_root, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    output: list[str]
    view_port: int

    def applied(self) -> int:
        return max((int(n) for n in re.findall(r"(\d+) movements applied", "".join(self.output))), default=0)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.view_port}/state", timeout=5) as response:
            return dict(json.loads(response.read()))


@pytest.fixture(scope="module")
def demo(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    unique = f"{os.getpid()}-{time.monotonic_ns()}"
    view_port = free_port()
    port = free_ports(2, avoid=[view_port])  # the demo's two workers listen on port and port + 1
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": bootstrap, "STOCKSYNC_TOPIC_PREFIX": f"demo-{unique}",
           "STOCKSYNC_APP_ID": f"demo-{unique}", "STOCKSYNC_WEB_PORT": str(port),
           "STOCKSYNC_DATA_DIR": str(tmp_path_factory.mktemp("demo") / "data"),
           "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": "6"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--rate", "20",  # the default hour
                             "--view-port", str(view_port)],
                            cwd=repo_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    running = Demo(proc, output, view_port)

    def applying() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited with {proc.returncode}:\n{''.join(output)[-3000:]}")
        return running.applied() > 50

    def live() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the demo exited with {proc.returncode}:\n{''.join(output)[-3000:]}")
        return any(line.startswith("live view: ") for line in output)

    def moving() -> bool:
        try:
            return int(running.state().get("applied", 0)) > 0
        except OSError:
            return False

    try:
        wait_for(live, 180, "the live view to start", interval_s=0.2)
        # Stock moves on the page within 10 s of it (an hour's run is planned as it goes, not up front).
        wait_for(moving, 10, "movements applied on the live page", interval_s=0.2)
        wait_for(applying, 180, "the live view to show movements applied", interval_s=1.0)
        yield running
    finally:
        if proc.poll() is None:  # the last test stops it with Ctrl-C; this is for a test that failed first
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_the_live_view_shows_stock_moving(demo: Demo) -> None:
    text = "".join(demo.output)
    assert re.search(r"p50 \d+ ms\s+p99 \d+ ms", text) and "accepted" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{demo.view_port}/", timeout=5) as page:
        assert b"stocksync live" in page.read()
    shown = demo.state()
    assert shown["applied"] > 0 and shown["skus"] and shown["skus"][0]["positions"]
    # The charts' series: a point a second, movements flowing, the busiest SKUs' ATS on the widest channel.
    wait_for(lambda: len(demo.state()["charts"]["seconds"]) >= 5, 30, "five seconds of chart samples")
    charts = demo.state()["charts"]
    assert len(charts["throughput"]) == len(charts["p99_ms"]) == len(charts["seconds"])
    assert max(charts["throughput"]) > 0 and max(charts["p99_ms"]) > 0
    assert charts["ats_channel"] in shown["channels"]
    assert any(v is not None for series in charts["ats"].values() for v in series)
    # The simulator's web and app carts are decided whole; an accepted one leaves in at least one parcel.
    wait_for(lambda: demo.state()["orders"]["accepted"] > 0, 60, "an accepted cart on the live view")
    assert demo.state()["orders"]["parcels_per_order"] >= 1
    assert re.search(r"orders \(carts held whole or not at all\): \d+ accepted", "".join(demo.output))
    # Returns waiting for inspection and damaged units: on hand, shown, sold by no channel.
    wait_for(lambda: sum(demo.state()["not_sellable"].values()) > 0, 60, "units not sellable on the live view")
    assert re.search(r"on hand but not sellable: \d+ quality control, \d+ damaged", "".join(demo.output))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (deploy/dev.sh installs it where apt can)")
def test_the_demo_page_draws_its_charts_in_a_real_browser(demo: Demo, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    wait_for(lambda: len(demo.state()["charts"]["seconds"]) >= 5, 30, "five seconds of chart samples")
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         f"http://127.0.0.1:{demo.view_port}/"], capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert "<table" in dom, done.stderr[-2000:]
    assert "carts accepted / refused" in dom and "parcels per cart" in dom
    assert re.search(r"in inspection / damaged / quarantine<b>\d+ / \d+ / \d+</b>", dom)
    for chart, names in (("throughput", {"movements/s"}), ("latency", {"p50", "p99"}), ("ats", None)):
        svg = re.search(rf'<svg id="chart-{chart}"[^>]*>(.*?)</svg>', dom, re.S)
        assert svg is not None, f"chart {chart} missing"
        drawn = dict(re.findall(r'<path class="series" data-name="([^"]+)" d="([^"]+)"', svg.group(1)))
        assert drawn and all(d.count("L") >= 2 for d in drawn.values()), f"chart {chart} has no lines: {drawn}"
        # Points above the zero line (y = 144 in the 160-high chart) within what the chart shows.
        heights = [float(y) for d in drawn.values() for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)]
        assert any(y < 143.5 for y in heights), f"chart {chart} shows nothing above zero: {drawn}"
        if names is not None:
            assert set(drawn) == names
        else:  # one line per busiest SKU in the table below it
            assert set(drawn) <= set(re.findall(r"<tr><td>([^<]+)</td>", dom))
    assert re.search(r'<small id="age">\d+ s</small>', dom)  # the page's last fetch of /state worked


def test_ctrl_c_stops_the_demo_and_leaves_nothing_running(demo: Demo) -> None:
    os.killpg(demo.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    code = demo.proc.wait(90)
    assert code == 0, "".join(demo.output)[-3000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every process the demo started is gone
        try:
            os.killpg(demo.proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("processes of the demo are still running after Ctrl-C")
    text = "".join(demo.output)
    assert "-INT-" not in text and "Traceback" not in text, text[-3000:]
