"""The README's Python examples, run as a reader would: against a worker of the demo's network, in the order the
README gives them, with the cluster named only by STOCKSYNC_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (repo_root() / "README.md").read_text(), re.S)


def test_the_readme_s_first_movements_run_against_the_demo_network(deployment: Deployment) -> None:
    receipt, order, cart = python_examples()
    deployment.apply_network(yaml.safe_load((repo_root() / "deploy" / "network.yaml").read_text()))
    worker = deployment.start_worker("w1")
    env = {k: v for k, v in worker_env(deployment).items() if k != "KAFKA_BOOTSTRAP_SERVERS"}

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=repo_root(), env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(receipt)
    positions = deployment.registry.positions.name
    wait_for(lambda: deployment.latest(positions).get(b"SKU-00001|wh-kassel", {}).get("figures", {})
             .get("on_hand") == 40, 30, "the receipt applied")
    printed = run(order).replace("\n", "|")  # the feed's lines come from its own thread, between the others
    assert "held" in printed and "refused" not in printed, printed
    assert "SKU-00001 38" in printed  # the feed's replay: 40 less the web's buffer of 2
    wait_for(lambda: deployment.latest(positions)[b"SKU-00001|wh-kassel"]["figures"]["on_hand"] == 38, 30,
             "the order sold")
    printed = run(cart)
    # wh-kassel has both lines (no store does): one parcel, then shipped.
    assert printed.startswith("wh-kassel (('1', 1), ('2', 3))") and printed.count("\n") == 1, printed
    wait_for(lambda: [deployment.latest(positions)[f"SKU-0000{n}|wh-kassel".encode()]["figures"]["on_hand"]
                      for n in (1, 2)] == [37, 7], 30, "the cart shipped")
    assert worker.ready()


def worker_env(deployment: Deployment) -> dict[str, str]:
    """What a channel's service of this deployment has in its environment."""
    return {**deployment.env(0, "readme"), "STOCKSYNC_BOOTSTRAP_SERVERS": deployment.bootstrap}
