"""The worker's Prometheus metrics on the real broker: they count what the ledger and the dead-letter topic hold,
and every query of the Grafana dashboard (deploy/grafana) names a metric a running worker exports."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.channel import ChannelClient
from streams.domain import Kind, Movement
from tests.integration.conftest import repo_root, wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK, retail_workload

DASHBOARD = repo_root() / "deploy" / "grafana" / "stocksync-dashboard.json"
RULES = repo_root() / "deploy" / "kubernetes" / "base" / "monitoring.yaml"


def scrape(worker: WorkerProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample the worker exports, by sample name (`_total`, `_bucket`... included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def dashboard_metrics(path: Path) -> dict[str, set[str]]:
    """Per panel title, the stocksync metric names its queries use."""
    found: dict[str, set[str]] = {}
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel.get("targets", []):
            found.setdefault(panel["title"], set()).update(re.findall(r"\bstocksync_[a-z_]+\b", target["expr"]))
    return found


def alert_metrics(path: Path) -> dict[str, set[str]]:
    """Per alert, the stocksync metric names (as sampled: counters with _total) its expression uses."""
    rules = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == "PrometheusRule")
    return {rule["alert"]: set(re.findall(r"\bstocksync_[a-z_]+\b", rule["expr"]))
            for group in rules["spec"]["groups"] for rule in group["rules"]}


def test_metrics_count_what_was_committed_and_feed_every_dashboard_panel(deployment: Deployment) -> None:
    deployment.store = "rocksdb://"  # the table-size gauges read RocksDB's estimates
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1")
    movements = retail_workload(3_000, skus=40, seed=3, expiring_after_ms=2_000)
    at = movements[-1].occurred_at
    movements.append(Movement(Kind.SALE, "oversold-1", "pos-1", "SKU-0001", "s1", 5_000, at))  # negative on-hand
    deployment.send(movements, pack=20)
    deployment.send_raw(deployment.registry.sales("pos-1").name, b"SKU-0001", b"not avro at all")
    with ChannelClient("wms", deployment.bootstrap, settings=deployment.settings) as wms, \
            ChannelClient("web", deployment.bootstrap, settings=deployment.settings, linger_ms=0) as web:
        receipt = wms.receipt("ORD-1", "w1", 10, event_id="ord-1-in")
        damaged = wms.change_state("ORD-1", "w1", 2, to_state="damaged", event_id="ord-1-damaged")
        written_off = wms.write_off("ORD-1", "w1", 2, from_state="damaged", reason="damage", event_id="ord-1-off")
        wms.flush()
        assert web.reserve_order("m-1", [("ORD-1", 2)], timeout_s=60).accepted
        assert web.reserve_order("m-2", [("ORD-NONE", 1)], timeout_s=60).reason == "insufficient_stock"
    deployment.sent.update({m.key: m for m in (receipt, damaged, written_off)})
    deployment.settle(240)

    _, history = deployment.replay_ledger()
    dead = [v for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)]
    wait_for(lambda: "stocksync_table_keys" in scrape(worker), 30, "the gauges sampled")
    samples = scrape(worker)

    def counted(name: str, *labels: str) -> Counter[tuple[str, ...]]:
        return Counter({tuple(s[0][label] for label in labels): int(s[1]) for s in samples.get(name, [])
                        if s[1]})

    # Counted once per committed movement: exactly what the ledger holds (duplicates are not ledgered).
    ledgered = Counter((e["kind"], e["channel"], e["status"]) for e in history)
    movements_counted = counted("stocksync_movements_total", "kind", "channel", "status")
    assert {k: v for k, v in movements_counted.items() if k[2] != "duplicate"} == ledgered
    assert sum(v for k, v in movements_counted.items() if k[2] == "duplicate") > 0
    assert counted("stocksync_dead_letters_total", "reason") == Counter((d["reason"],) for d in dead)
    assert counted("stocksync_anomalies_total", "anomaly")[("negative_on_hand",)] >= 1
    assert counted("stocksync_orders_decided_total", "channel", "result") == Counter(
        {("web", "accepted"): 1, ("web", "insufficient_stock"): 1})
    # Returned and written-off units: those of the movements the ledger says were applied.
    applied = [deployment.sent.get(f"{e['channel']}:{e['event_id']}") for e in history if e["status"] == "applied"]
    returned: Counter[tuple[str, ...]] = Counter()
    written: Counter[tuple[str, ...]] = Counter()
    for m in applied:
        if m is not None and m.kind is Kind.RETURN:
            returned[(m.channel, m.returned_via or "unknown", m.returned_to)] += m.quantity
        elif m is not None and m.to_state == "written_off":
            written[(m.state or "sellable", m.reason)] += m.quantity
    assert counted("stocksync_returned_units_total", "channel", "via", "state") == returned
    assert len({state for _, _, state in returned}) == 3  # the workload's returns went to every state
    assert counted("stocksync_written_off_units_total", "state", "reason") == written
    assert written[("damaged", "damage")] >= 2
    outputs = counted("stocksync_outputs_total", "topic")
    assert outputs[(deployment.registry.ledger.name,)] == len(history)
    assert sum(v for _, v in samples["stocksync_table_keys"]) > 40  # a head per SKU, and history records
    assert {labels["role"] for labels, _ in samples["stocksync_table_keys"]} == {"active"}  # one worker: no standby
    assert not [name for name in samples if name.endswith("_created")]
    assert sum(v for _, v in samples["stocksync_table_bytes"]) > 0
    assert samples["stocksync_ready"] == [({}, 1.0)]
    assert sum(v for labels, v in samples["stocksync_input_lag_messages"]) == 0
    assert {labels["partition"] for labels, _ in samples["stocksync_input_lag_messages"]} == \
        {str(p) for p in range(deployment.partitions)}

    # Every metric a dashboard panel queries is exported by this running worker, with samples.
    panels = dashboard_metrics(DASHBOARD)
    assert len(panels) >= 15
    missing = {title: sorted(name for name in names if name not in samples) for title, names in panels.items()}
    assert {title: names for title, names in missing.items() if names} == {}
    # So is every metric an alert of the Kubernetes deployment's PrometheusRule asks about.
    alerts = alert_metrics(RULES)
    assert len(alerts) >= 5
    missing = {alert: sorted(name for name in names if name not in samples) for alert, names in alerts.items()}
    assert {alert: names for alert, names in missing.items() if names} == {}
