"""Catalog aliases on the broker: `stocksync catalog apply` publishes them, a channel reports and reserves by its
own identifier, the worker resolves it to the SKU (routing it to the SKU's partition), an unknown alias is
dead-lettered with its reason, the channel's feed and decisions carry its identifier, and the API answers by
alias; applying a smaller catalog removes aliases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from streams.channel import ChannelClient, Line
from streams.domain import Kind
from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": deployment.bootstrap,
           "STOCKSYNC_TOPIC_PREFIX": deployment.settings.topic_prefix, "STOCKSYNC_APP_ID": deployment.settings.app_id,
           "STOCKSYNC_PARTITIONS": str(deployment.partitions)}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=repo_root(), capture_output=True,
                          text=True, timeout=120, env=env)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_channels_work_by_their_own_identifiers(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    catalog = deployment.tmp / "catalog.csv"
    catalog.write_text("channel,alias,sku\n*,4006381333931,SKU-CAT\nmarket,B00-LISTING-7,SKU-CAT\n"
                       "pos-1,POS-0042,SKU-CAT\n")
    applied = cli(deployment, "catalog", "apply", str(catalog))
    assert applied.returncode == 0, applied.stderr
    assert "3 aliases added or changed, 0 removed" in applied.stdout
    worker = deployment.start_worker("w1")
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("market", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as market, \
            ChannelClient("pos-1", deployment.bootstrap, settings=deployment.settings) as pos:
        feed: dict[str, Any] = {}
        market.subscribe_ats(lambda update: feed.__setitem__(update.sku, update))
        wms.report(Kind.RECEIPT, None, "w1", 20, event_id="cat-r1", alias="4006381333931")  # the barcode
        wms.report(Kind.RECEIPT, None, "w1", 5, event_id="cat-r2", alias="0000000000000")  # in no catalog
        pos.report(Kind.RECEIPT, None, "s1", 3, event_id="cat-r3", alias="POS-0042")
        pos.report(Kind.SALE, None, "s1", 1, event_id="cat-s1", alias="POS-0042")
        wms.flush()
        pos.flush()
        wait_for(lambda: {k: v["figures"]["on_hand"] for k, v in deployment.latest(
            deployment.registry.positions.name).items()} == {b"SKU-CAT|w1": 20, b"SKU-CAT|s1": 2}, 30, "applied")
        decision = market.reserve(None, 2, reservation_id="cat-o1", alias="B00-LISTING-7", timeout_s=30)
        assert decision.accepted and decision.sku == "SKU-CAT" and decision.alias == "B00-LISTING-7"
        wait_for(lambda: "SKU-CAT" in feed and feed["SKU-CAT"].ats == 20 - 2 - 3, 30, "market's feed")  # buffer 3
        assert feed["SKU-CAT"].alias == "B00-LISTING-7"  # the marketplace's own identifier beside the SKU
        # Scan to buy: the barcode and a delivery point give the nearest location that can fill it, and a hold.
        status, plan = get(f"{worker.url}/channels/web/aliases/4006381333931/sourcing?quantity=1&lat=52.5&lon=13.4")
        assert (status, plan["sku"], plan["alias"], plan["allocations"][0]["location"]) == (
            200, "SKU-CAT", "4006381333931", "s1")
        with ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
            scanned = web.scan_to_buy("4006381333931", deliver_to=(52.5, 13.4), timeout_s=30)
            assert (scanned.accepted, scanned.sku, scanned.parts) == (True, "SKU-CAT", (("s1", 1),))
            cart = web.reserve_order("cat-cart", [Line(alias="4006381333931", quantity=3)], timeout_s=30)
            assert cart.accepted and [(h.sku, h.quantity, h.parts) for h in cart.lines] == [
                ("SKU-CAT", 3, (("w1", 3),))]
    positions = deployment.latest(deployment.registry.positions.name)
    assert {k: v["figures"]["on_hand"] for k, v in positions.items()} == {b"SKU-CAT|w1": 20, b"SKU-CAT|s1": 2}
    dead = [v for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)]
    assert [d["reason"] for d in dead] == ["unknown_alias"] and "0000000000000" in dead[0]["detail"]

    assert get(f"{worker.url}/channels/market/aliases/B00-LISTING-7")[1]["sku"] == "SKU-CAT"
    status, ats = get(f"{worker.url}/channels/market/aliases/B00-LISTING-7/ats")
    # w1's 20, less the marketplace's hold of 2, the cart's 3 (held at w1: s1 has 1 left) and its buffer of 3.
    assert (status, ats["sku"], ats["ats"], ats["alias"]) == (200, "SKU-CAT", 12, "B00-LISTING-7")
    assert get(f"{worker.url}/channels/web/aliases/B00-LISTING-7")[0] == 404  # the marketplace's, not web's
    asked = cli(deployment, "query", "--url", worker.url, "alias", "market", "B00-LISTING-7")
    assert asked.returncode == 0 and json.loads(asked.stdout)["sku"] == "SKU-CAT", asked.stderr
    asked = cli(deployment, "query", "--url", worker.url, "ats", "market", "B00-LISTING-7", "--alias")
    assert asked.returncode == 0 and json.loads(asked.stdout)["ats"] == 12, asked.stderr
    asked = cli(deployment, "query", "--url", worker.url, "source", "4006381333931", "--alias", "--channel", "web",
                "--quantity", "1", "--lat", "52.5", "--lon", "13.4")
    assert asked.returncode == 0 and json.loads(asked.stdout)["sku"] == "SKU-CAT", asked.stderr

    catalog.write_text("channel,alias,sku\n*,4006381333931,SKU-CAT\n")
    smaller = cli(deployment, "catalog", "apply", str(catalog))
    assert "0 aliases added or changed, 2 removed, 1 unchanged" in smaller.stdout, smaller.stderr
    wait_for(lambda: get(f"{worker.url}/channels/market/aliases/B00-LISTING-7")[0] == 404, 30, "the alias gone")
    shown = cli(deployment, "catalog", "show")
    assert shown.stdout.splitlines() == ["*\t4006381333931\tSKU-CAT"]


def test_a_bad_catalog_is_one_line_naming_the_line(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    catalog = deployment.tmp / "bad.csv"
    catalog.write_text("channel,alias,sku\n*,A1,SKU-1\nnowhere,A2,SKU-1\n")
    done = cli(deployment, "catalog", "apply", str(catalog))
    assert done.returncode == 2 and "line 3: channel 'nowhere' is not in the network" in done.stderr
    catalog.write_text("channel,alias,sku\n*,A1,SKU-1\nweb,A1,SKU-2\n*,A1,SKU-3\n")
    done = cli(deployment, "catalog", "apply", str(catalog))
    assert done.returncode == 2 and "line 4: alias 'A1' of * names SKU-1 already, not SKU-3" in done.stderr
