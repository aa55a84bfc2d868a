"""The README's main job: `stocksync demo` shows stock moving and Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.integration.conftest import free_port, repo_root, wait_for


def test_demo_runs_end_to_end_and_stops_cleanly_on_ctrl_c(bootstrap: str, unique: str, tmp_path: Path) -> None:
    port, view_port = free_port(), free_port()
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": bootstrap, "STOCKSYNC_TOPIC_PREFIX": f"demo-{unique}",
           "STOCKSYNC_APP_ID": f"demo-{unique}", "STOCKSYNC_WEB_PORT": str(port),
           "STOCKSYNC_DATA_DIR": str(tmp_path / "data"), "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": "6"}
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "--rate", "20", "--duration", "600",
                             "--view-port", str(view_port)],
                            cwd=repo_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        def applied() -> int:
            counts = [int(n) for n in re.findall(r"(\d+) movements applied", "".join(output))]
            return max(counts, default=0)

        wait_for(lambda: proc.poll() is None and applied() > 50, 180,
                 "the live view to show movements applied", interval_s=1.0)
        text = "".join(output)
        assert re.search(r"p50 \d+ ms\s+p99 \d+ ms", text) and "accepted" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{view_port}/", timeout=5) as page:
            assert b"stocksync live" in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{view_port}/state", timeout=5) as state:
            shown = json.loads(state.read())
        assert shown["applied"] > 0 and shown["skus"] and shown["skus"][0]["positions"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        code = proc.wait(90)
    assert code == 0, "".join(output)[-3000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every process the demo started is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("processes of the demo are still running after Ctrl-C")
