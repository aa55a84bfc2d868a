"""Stock states on the real broker: a return waiting for inspection is on hand but sold by no channel, its release
reaches the feeds, a write-off is on the ledger with its reason, and units that are not in a state cannot leave it
(dead-lettered with the reason and the original bytes, applied once sent again)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.channel import AtsUpdate, ChannelClient
from streams.domain import Kind, Movement
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_returns_inspection_release_and_write_off_through_the_channels(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1")
    web_feed: dict[str, int] = {}

    def on_update(update: AtsUpdate) -> None:
        web_feed[update.sku] = update.ats

    def sent(m: Movement) -> Movement:
        deployment.sent[m.key] = m  # the ledger's replay knows what was sent
        return m

    clients = {name: ChannelClient(name, deployment.bootstrap, settings=deployment.settings)
               for name in ("wms", "pos-1", "web")}
    wms, pos, web = clients["wms"], clients["pos-1"], clients["web"]
    try:
        subscription = web.subscribe_ats(on_update)
        assert subscription.wait_caught_up(10)
        sent(wms.receipt("RET-1", "s1", 10, event_id="r-1"))
        wms.flush()
        wait_for(lambda: web_feed.get("RET-1") == 8, 30, "web's ATS of the receipt (buffer 2)")
        sent(pos.return_("RET-1", "s1", 4, event_id="ret-1", disposition="inspect", returned_via="post"))
        sent(pos.return_("RET-1", "s1", 1, event_id="ret-2", disposition="damaged", returned_via="store"))
        pos.flush()
        deployment.settle()
        position = _json(f"{worker.url}/skus/RET-1/positions/s1")
        assert (position["on_hand"], position["quality_control"], position["damaged"]) == (10, 4, 1)
        assert web_feed["RET-1"] == 8  # units in inspection are sold by no channel

        sent(wms.change_state("RET-1", "s1", 3, from_state="quality_control", to_state="sellable",
                              reason="inspected", event_id="qc-1"))
        sent(wms.write_off("RET-1", "s1", 2, from_state="damaged", reason="damage", event_id="wo-too-many"))
        wms.flush()
        wait_for(lambda: web_feed.get("RET-1") == 11, 30, "the released units on web's feed")
        sent(wms.change_state("RET-1", "s1", 1, from_state="quality_control", to_state="damaged",
                              event_id="qc-2"))
        wms.flush()
        deployment.settle()
    finally:
        for one in clients.values():
            one.close()

    # Two damaged units were not there when the write-off came: dead-lettered, with what it was and why.
    [letter] = [v for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)]
    assert letter["reason"] == "insufficient_in_state"
    assert "damaged at 's1' holds fewer than the 2 units" in letter["detail"]
    write_off = deployment.sent.pop("wms:wo-too-many")
    name, original = deployment.codec.decode(letter["value"])
    assert name == Schema.MOVEMENT_BATCH  # the client packed it with its neighbour: only it is dead-lettered
    assert original["movements"][letter["movement_index"]] == movement_to_record(write_off)
    # Sent again now that two units are damaged, it applies: nothing was lost.
    deployment.send_applied([write_off])
    stocks, history = deployment.replay_ledger()
    position = stocks["RET-1"].position("s1")
    assert (position.on_hand, position.quality_control, position.damaged, position.quarantine) == (13, 0, 0, 0)
    deployment.assert_outputs_match(stocks)
    written = [e for e in history if e["event_id"] == "wo-too-many"]
    assert written[0]["reason"] == "damage" and written[0]["changes"][0]["before"]["damaged"] == 2
    assert written[0]["changes"][0]["after"]["damaged"] == 0

    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    returned = {(s.labels["via"], s.labels["state"]): s.value
                for s in families["stocksync_returned_units"].samples if s.name.endswith("_total")}
    assert returned == {("post", "quality_control"): 4.0, ("store", "damaged"): 1.0}
    written_off = {(s.labels["state"], s.labels["reason"]): s.value
                   for s in families["stocksync_written_off_units"].samples if s.name.endswith("_total")}
    assert written_off == {("damaged", "damage"): 2.0}


def test_a_state_change_that_overtook_its_units_is_sent_again_by_the_chaos_run_and_applies(
        deployment: Deployment) -> None:
    """What the chaos run does with `insufficient_in_state` letters (a re-routed movement overtaken): sent again
    from the dead letter as it was, each applies once its units are there."""
    from tests.chaos.run import send_again_what_came_too_early

    deployment.apply_network(NETWORK)
    deployment.start_worker("w1")
    at = int(time.time() * 1000) - 10_000
    release = Movement(Kind.ADJUSTMENT, "early-release", "wms", "RED-1", "w1", 2, at + 2, state="quarantine",
                       to_state="sellable")
    deployment.send_applied([Movement(Kind.RECEIPT, "red-in", "wms", "RED-1", "w1", 5, at)])
    deployment.send([release])
    wait_for(lambda: len(deployment.read(deployment.registry.deadletter.name)) == 1, 30, "the early release's letter")
    deployment.send_applied([Movement(Kind.ADJUSTMENT, "red-q", "wms", "RED-1", "w1", 3, at + 1,
                                      to_state="quarantine")])
    assert send_again_what_came_too_early(deployment) == 1
    stocks, history = deployment.replay_ledger()
    assert "early-release" in {e["event_id"] for e in history}
    position = stocks["RED-1"].position("w1")
    assert (position.on_hand, position.quarantine) == (4, 1)
    deployment.assert_outputs_match(stocks)
