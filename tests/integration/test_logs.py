"""The worker's log on the real broker: JSON lines on request, a movement's fields on every line about one, no
third-party chatter at Ctrl-C, and one summary line when it stops."""

from __future__ import annotations

import json
import signal
from typing import Any

from streams.domain import Kind, Movement
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def test_json_logs_name_the_movement_and_a_stop_says_what_was_done(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1", env={"STOCKSYNC_LOG_FORMAT": "json", "STOCKSYNC_LOG_LEVEL": "info"})
    at = 1_700_000_000_000
    deployment.send([Movement(Kind.RECEIPT, "r-1", "wms", "SKU-LOG", "s1", 10, at),
                     Movement(Kind.SALE, "s-1", "pos-1", "SKU-LOG", "s1", 2, at + 1),
                     Movement(Kind.SALE, "s-1", "pos-1", "SKU-LOG", "s1", 2, at + 1),  # a re-send
                     Movement(Kind.SALE, "s-2", "pos-1", "SKU-LOG", "w1", 1, at + 2)])  # pos-1 has no w1
    deployment.settle(120)

    def lines() -> list[dict[str, Any]]:
        text = worker.log.read_text()  # the worker's whole output, from its start: each line is one JSON object
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    wait_for(lambda: any(line["logger"] == "stocksync.deadletters" for line in lines()), 30, "the dead letter logged")
    letter = next(line for line in lines() if line["logger"] == "stocksync.deadletters")
    assert (letter["sku"], letter["channel"], letter["event_id"], letter["reason"]) == \
        ("SKU-LOG", "pos-1", "s-2", "location_not_owned"), letter
    assert letter["level"] == "warning" and letter["time"].endswith("+00:00")

    worker.stop(signal.SIGINT)  # Ctrl-C
    out = worker.log.read_text()
    assert "-INT-" not in out and "OK ^" not in out and "😊" not in out
    last = lines()[-1]
    assert last["message"].startswith("stocksync worker stopped after ") and last["level"] == "info", last
    assert "4 movements (1 duplicates), 1 dead letters" in last["message"], last  # the rejected one too
    assert worker.proc.returncode == 0
