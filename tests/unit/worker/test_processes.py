"""How `stocksync worker --processes` lays its processes out and merges their metrics (the processes themselves
run in tests/integration/test_processes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.errors import ConfigError
from streams.settings import load_settings
from streams.worker.runtime.processes import merged_metrics, places, process_count, usable_cpus
from tests.unit.test_cli_and_settings import run_cli


def test_processes_are_a_number_or_one_per_core() -> None:
    assert process_count("3") == 3
    assert process_count("auto", cpus=8) == 8
    for bad in ("0", "1000", "two"):
        with pytest.raises(ConfigError, match="--processes"):
            process_count(bad)


def test_auto_is_no_more_processes_than_the_container_may_use(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    cores = usable_cpus(cpu_max)
    assert cores >= 1
    cpu_max.write_text("250000 100000\n")  # a limit of 2.5 CPUs: two processes
    assert usable_cpus(cpu_max) == min(cores, 2)
    cpu_max.write_text("50000 100000\n")
    assert usable_cpus(cpu_max) == 1
    assert usable_cpus(tmp_path / "absent") == cores


def test_each_process_has_its_own_port_state_and_advertised_url() -> None:
    settings = load_settings(web_port=7000, data_dir=Path("/var/lib/stocksync"),
                             advertised_url="https://worker-0.stocksync:7000")
    laid_out = places(settings, 2)
    assert [(p.number, p.port, p.data_dir, p.advertised_url) for p in laid_out] == [
        (1, 7001, "/var/lib/stocksync/process-1", "https://worker-0.stocksync:7001"),
        (2, 7002, "/var/lib/stocksync/process-2", "https://worker-0.stocksync:7002")]
    assert laid_out[0].environment()["STOCKSYNC_WORKER_PROCESSES"] == "1"
    assert places(load_settings(web_port=7000), 1)[0].advertised_url is None
    with pytest.raises(ConfigError, match="fixed port"):
        places(load_settings(web_port=0), 2)


def test_every_process_metric_is_kept_labelled_with_its_process() -> None:
    pages = {}
    for number, movements in ((1, 3), (2, 5)):
        registry = CollectorRegistry()
        counter = Counter("stocksync_movements", "Movements", ["channel"], registry=registry)
        counter.labels("web").inc(movements)
        pages[number] = generate_latest(registry).decode()
    merged = CollectorRegistry()

    class Merged:
        def collect(self):  # type: ignore[no-untyped-def]
            return merged_metrics(pages)

    merged.register(Merged())
    text = generate_latest(merged).decode()
    assert text.count("# TYPE stocksync_movements_total counter") == 1
    samples = {(s.labels["process"], s.labels["channel"]): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "stocksync_movements_total"}
    assert samples == {("1", "web"): 3.0, ("2", "web"): 5.0}


def test_a_bad_process_count_is_one_line() -> None:
    result = run_cli("worker", "--processes", "0")
    assert result.returncode == 2
    assert result.stderr == "stocksync: error: --processes: 0 is not between 1 and 999\n"
