"""Every Python example in the guides (docs/*.md), run as a reader would paste it: in the order the guides give
them, each as a script of its own, against a worker of the demo's network with some stock and a catalog, the
cluster named only by STOCKSYNC_BOOTSTRAP_SERVERS. An example that no longer runs fails here, not in a reader's
hands."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from streams.channel import ChannelClient
from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment
from tests.integration.test_readme import worker_env

GUIDES = ["channels.md", "domain.md", "api.md", "operating.md", "kafka.md", "guarantees.md", "topics.md",
          "architecture.md", "performance.md", "index.md"]


def examples() -> list[tuple[str, int, str]]:
    """(guide, number in it, code) of every ```python block."""
    found = []
    for guide in GUIDES:
        text = (repo_root() / "docs" / guide).read_text()
        found += [(guide, n, code) for n, code in enumerate(re.findall(r"```python\n(.*?)```", text, re.S))]
    return found


def test_every_guide_is_looked_at() -> None:
    assert sorted(GUIDES + ["reference.md"]) == sorted(p.name for p in (repo_root() / "docs").glob("*.md"))


def test_every_python_example_in_the_guides_runs(deployment: Deployment) -> None:
    found = examples()
    assert len(found) >= 5
    deployment.apply_network(yaml.safe_load((repo_root() / "deploy" / "network.yaml").read_text()))
    worker = deployment.start_worker("w1")
    catalog = deployment.tmp / "catalog.csv"  # the examples' barcode names a product
    catalog.write_text("channel,alias,sku\n*,4006381333931,SKU-00002\n")
    env = {k: v for k, v in worker_env(deployment).items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    applied = subprocess.run([sys.executable, "-m", "streams.cli", "catalog", "apply", str(catalog)], env=env,
                             cwd=repo_root(),
                             capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    stock = ["SKU-1", "SKU-2", "SKU-00001", "SKU-00002"]
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms:
        for sku in stock:
            for location in ("wh-kassel", "store-berlin"):
                wms.receipt(sku, location, 30, event_id=f"docs-{sku}-{location}")
    positions = deployment.registry.positions.name
    wait_for(lambda: all(f"{sku}|wh-kassel".encode() in deployment.latest(positions) for sku in stock), 60,
             "the examples' stock applied")

    for guide, number, code in found:
        done = subprocess.run([sys.executable, "-c", code], cwd=repo_root(), env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"docs/{guide}, example {number + 1}:\n{code}\n{done.stderr[-3000:]}"
    assert worker.ready()
    # What they sent was applied like any channel's movements: nothing dead-lettered.
    assert deployment.read(deployment.registry.deadletter.name) == []
