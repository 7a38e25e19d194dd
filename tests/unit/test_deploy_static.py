"""Static checks of the deployment files (no Docker engine and no cluster on CI machines).

They cross-check the files against the code: compose commands against the CLI, FRAUD_*
variables against the settings, every metric and label in the alert rules and the dashboard
against `fraudstream.metrics`, Kubernetes manifests against each other and against the
alerts' job names. `tests/unit/test_prometheus_rules.py` runs the real promtool.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from fraudstream.cli import app as cli_app
from fraudstream.metrics import METRIC_NAMES, RetrainMetrics, WorkerMetrics
from fraudstream.settings import Settings, env_var

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fraudstream.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "fraudstream.yml"
K8S_BASE = DEPLOY / "k8s" / "base"
SECRET_TEMPLATE = K8S_BASE / "secret-kafka.template.yaml"
OPERATIONS = DEPLOY / "OPERATIONS.md"

IMAGE = "fraudstream:latest"
METRICS_PORT = 9100
JOBS = {"worker": "fraudstream-worker", "retrain": "fraudstream-retrain"}
"""Pod component label -> Prometheus job name, as the alert rules expect them."""


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = _yaml(COMPOSE)
    return doc


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


# -- PromQL: the metric and label names an expression uses ----------------------------------
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan", "Inf", "NaN"}
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
"""Series Prometheus makes itself."""
TARGET_LABELS = {"job", "instance", "le", "__name__", "alertname", "alertstate", "severity"}


def promql_names(expr: str) -> set[str]:
    """Metric (and recording rule) names in a PromQL expression, functions and keywords left out."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if not match.group(2) and match.group(1) not in _KEYWORDS:
            names.add(match.group(1))
    return names


def promql_labels(expr: str) -> set[str]:
    """Label names in matchers and in by/without/on/ignoring/group_* lists."""
    text = _STRINGS.sub('""', expr)
    labels: set[str] = set()
    for block in re.findall(r"\{([^{}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", block))
    for block in _GROUPING.findall(text):
        labels |= {label.strip() for label in block.split(",") if label.strip()}
    return labels


def _collectors() -> list[Any]:
    found = []
    for metrics in (WorkerMetrics(), RetrainMetrics()):
        found += [m for m in vars(metrics).values() if hasattr(m, "describe")]
    return found


def _exposed_name(collector: Any) -> str:
    family = collector.describe()[0]
    suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
    return f"{family.name}{suffix}"


HISTOGRAMS = {_exposed_name(c) for c in _collectors() if c.describe()[0].type == "histogram"}
KNOWN_LABELS = TARGET_LABELS | {
    label
    for collector in _collectors()
    for label in getattr(collector, "_labelnames", ())  # prometheus-client keeps them here
}


def _recorded() -> set[str]:
    return {
        rule["record"]
        for group in _yaml(ALERTS)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def unknown_metrics(expr: str, recorded: set[str]) -> set[str]:
    def known(name: str) -> bool:
        if name in METRIC_NAMES or name in BUILTIN_SERIES or name in recorded:
            return True
        return any(
            name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS
            for suffix in ("_bucket", "_sum", "_count")
        )

    return {name for name in promql_names(expr) if not known(name)}


def _rule_exprs() -> Iterator[tuple[str, str]]:
    for group in _yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    doc = _dashboard()
    for panel in _panels(doc["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target.get("expr", "")
    for variable in doc.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query or "")
        # label_values(<selector>, <label>): only the selector is PromQL
        selector = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        yield f"variable {variable['name']}", selector.group(1) if selector else query


# -- Kubernetes manifests --------------------------------------------------------------------
def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_BASE.glob("*.yaml")):
        if path != SECRET_TEMPLATE and path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def _containers(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    spec = _pod_spec(doc) if doc else None
    return [*spec.get("initContainers", []), *spec["containers"]] if spec else []


def _workload(name: str) -> dict[str, Any]:
    return next(
        d for d in _k8s_docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )


# -- everything parses ------------------------------------------------------------------------
def _deploy_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in suffixes and p.is_file())


@pytest.mark.parametrize(
    "path",
    [COMPOSE, *_deploy_files(".yml", ".yaml", ".json")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text()), dict)
    else:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert documents and all(isinstance(doc, dict) for doc in documents)


# -- docker-compose.yml -------------------------------------------------------------------------
def test_compose_file_parses_and_references_existing_files() -> None:
    doc = _compose()
    services = doc["services"]
    assert {"kafka", "offline-demo"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    declared = set(doc.get("volumes", {}))
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in declared or source.startswith(("./", "/")), source


def test_compose_has_the_whole_stack() -> None:
    services = _services()
    expected = {"topics-init", "simulate", "train", "worker-1", "worker-2", "retrain", "replay"}
    assert expected | {"prometheus", "grafana"} <= set(services)
    assert [n for n, s in services.items() if s.get("command") == ["worker"]] == [
        "worker-1",
        "worker-2",
    ]


def test_compose_dependencies_point_at_services_with_the_needed_state() -> None:
    services = _services()
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {target: {"condition": "service_started"} for target in depends}
        graph[name] = set(depends)
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is not one-shot"
            else:
                assert condition == "service_started", condition
    done: set[str] = set()
    while len(done) < len(graph):  # topological order exists: no dependency cycle
        ready = {name for name, needs in graph.items() if name not in done and needs <= done}
        assert ready, f"dependency cycle among {sorted(set(graph) - done)}"
        done |= ready
    needs_model = {"worker-1", "worker-2", "retrain"}
    for name in needs_model:
        conditions = services[name]["depends_on"]
        assert conditions["train"]["condition"] == "service_completed_successfully", name
        assert conditions["topics-init"]["condition"] == "service_completed_successfully", name
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for replayer in ("replay", "replay-labels"):
        for worker in ("worker-1", "worker-2"):
            assert services[replayer]["depends_on"][worker]["condition"] == "service_healthy"


def test_compose_volumes_and_ports_are_consistent() -> None:
    doc = _compose()
    services = doc["services"]
    declared = set(doc["volumes"])
    used: set[str] = set()
    host_ports: list[str] = []
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert target.startswith("/"), f"{name}: {volume}"
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
        host_ports += [port.rsplit(":", 1)[0] for port in service.get("ports", [])]
    assert declared == used, f"declared but unused volumes: {declared - used}"
    assert len(host_ports) == len(set(host_ports)), f"a host port is published twice: {host_ports}"

    # one registry volume: written by train and retrain, read by both workers
    def mounts(name: str) -> dict[str, str]:
        return {v.split(":")[1]: v for v in services[name].get("volumes", [])}

    path = services["worker-1"]["environment"]["FRAUD_REGISTRY_DIR"]
    for name in ("train", "worker-1", "worker-2", "retrain"):
        assert services[name]["environment"]["FRAUD_REGISTRY_DIR"] == path, name
        assert mounts(name)[path].startswith("registry:"), name
    assert mounts("worker-1")[path].endswith(":ro")
    assert not mounts("retrain")[path].endswith(":ro")


def _is_fraudstream(service: dict[str, Any]) -> bool:
    return service.get("image") == IMAGE


def test_compose_fraudstream_services_share_the_image_and_run_as_its_user() -> None:
    for name, service in _services().items():
        if not _is_fraudstream(service):
            assert "build" not in service, name
            continue
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name
        if name == "volume-init":
            # the one root step: chown of the named volumes, no network, nothing else
            assert service["entrypoint"][0] == "chown" and service["network_mode"] == "none"
            assert all(v.split(":")[1] in service["command"] for v in service["volumes"])
        else:
            assert str(service.get("user", "10001")).split(":")[0] not in {"0", "root"}, name


def test_compose_environment_is_fraud_settings_only() -> None:
    variables = {env_var(field) for field in Settings.model_fields}
    for name, service in _services().items():
        if not _is_fraudstream(service):
            continue
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use a mapping for environment"
        unknown = set(environment) - variables
        assert not unknown, f"{name} sets variables the settings do not know: {unknown}"


def test_compose_workers_serve_metrics_and_health_where_prometheus_looks() -> None:
    services = _services()
    scrape = {job["job_name"]: job for job in _yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    targets = {
        job: {t for static in scrape[job]["static_configs"] for t in static["targets"]}
        for job in JOBS.values()
    }
    assert targets[JOBS["worker"]] == {f"worker-1:{METRICS_PORT}", f"worker-2:{METRICS_PORT}"}
    assert targets[JOBS["retrain"]] == {f"retrain:{METRICS_PORT}"}
    for name in ("worker-1", "worker-2", "retrain"):
        service = services[name]
        assert service["environment"]["FRAUD_METRICS_PORT"] == str(METRICS_PORT), name
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{METRICS_PORT}/healthz" in check, name
        assert "urllib.request" in check and check.startswith("CMD python"), name
        assert service["restart"] == "unless-stopped", name
    assert services["retrain"]["command"][:2] == ["retrain", "--every"]


def test_compose_mounts_prometheus_rules_and_grafana_provisioning() -> None:
    services = _services()
    prometheus = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    config = _yaml(PROMETHEUS_CONFIG)
    assert prometheus["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert prometheus[f"/etc/prometheus/{rule_file}"] == f"./deploy/prometheus/{rule_file}"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = _yaml(DASHBOARD_PROVIDERS)["providers"][0]
    assert grafana[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    datasource = _yaml(DATASOURCES)["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


# -- the CLI commands the deployment runs ------------------------------------------------------
def _fraudstream_argvs(entrypoint: list[str] | None, command: list[str]) -> list[list[str]]:
    """The `fraudstream ...` argument lists a container runs (image entrypoint or sh -c)."""
    if entrypoint is None:
        return [command]
    if entrypoint[:2] != ["sh", "-c"]:
        return []
    argvs = []
    for part in re.split(r"&&|\|\||;", command[0]):
        found = re.search(r"(?:^|\s)fraudstream\s+(.*)", part)
        if found:
            argvs.append([t for t in shlex.split(found.group(1)) if ">" not in t])
    return argvs


def _deployed_argvs() -> Iterator[Any]:
    for name, service in _services().items():
        if _is_fraudstream(service):
            for argv in _fraudstream_argvs(service.get("entrypoint"), service.get("command", [])):
                yield pytest.param(argv, id=f"compose-{name}-{argv[0]}")
    for path in sorted(K8S_BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for container in _containers(doc):
                yield pytest.param(container["args"], id=f"k8s-{doc['metadata']['name']}")


def _contract_commands() -> set[str]:
    contract = ROOT / "docs" / "CONTRACT.md"
    return set(re.findall(r"\*\*`fraudstream (\w+)", contract.read_text(encoding="utf-8")))


@pytest.mark.parametrize("argv", list(_deployed_argvs()))
def test_deployed_commands_parse_with_the_cli(argv: list[str]) -> None:
    """Each command line the containers run is accepted by the real CLI parser."""
    args = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in argv]  # compose defaults
    command: Any = typer.main.get_command(cli_app)  # typer >= 0.2x vendors its own click
    name, rest = args[0], args[1:]
    if name not in command.commands and name in _contract_commands():
        pytest.skip(f"`fraudstream {name}` is in docs/CONTRACT.md but not in the CLI yet")
    command = command.commands[name]
    while hasattr(command, "commands"):  # a command group: `topics create`
        command, rest = command.commands[rest[0]], rest[1:]
    try:
        command.make_context(name, list(rest))
    except Exception as exc:  # the vendored click's UsageError and friends
        if not hasattr(exc, "format_message"):
            raise
        pytest.fail(f"fraudstream {' '.join(args)}: {exc.format_message()}")


# -- metric names: alert rules, recording rules, dashboard ------------------------------------
def test_metric_names_match_the_metric_objects() -> None:
    assert {_exposed_name(c) for c in _collectors()} == METRIC_NAMES
    assert {"fraudstream_end_to_end_latency_seconds", "fraudstream_score"} <= HISTOGRAMS


def test_the_metric_cross_check_catches_wrong_names() -> None:
    recorded = {"fraudstream:ok:rate5m"}
    good = (
        'histogram_quantile(0.99, sum by (le) (rate(fraudstream_score_bucket{job="x"}[5m])))'
        " / on (job) group_left sum(fraudstream:ok:rate5m) > bool 1e3"
        ' and absent(up{job="fraudstream-worker"} == 1) or vector(0) offset 1h'
        ' + time() - count(ALERTS{alertstate="firing"})'
    )
    assert unknown_metrics(good, recorded) == set()
    assert promql_labels(good) == {"le", "job", "alertstate"}
    bad = (
        "rate(fraudstream_transactions_scored[5m])"  # the counter without _total
        " + fraudstream_transactions_scored_total_count"  # a counter is no histogram
        ' + sum by (reason) (fraudstream_dead_letter_total{reason=~"x|y"})'  # typo
        " + fraudstream:missing:rate5m"  # a recording rule nobody defines
        " + sum(rate(fraudstream_score_bucket[$__rate_interval]))"
    )
    assert unknown_metrics(bad, recorded) == {
        "fraudstream_transactions_scored",
        "fraudstream_transactions_scored_total_count",
        "fraudstream_dead_letter_total",
        "fraudstream:missing:rate5m",
    }


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_and_label_used_is_exported(source: str) -> None:
    exprs = list(_rule_exprs() if source == "alerts" else _dashboard_exprs())
    assert len(exprs) >= 10
    recorded = _recorded()
    used: set[str] = set()
    for where, expr in exprs:
        assert not unknown_metrics(expr, recorded), f"{where}: {expr}"
        assert promql_labels(expr) <= KNOWN_LABELS, f"{where}: unknown label in {expr}"
        used |= promql_names(expr)
    if source == "alerts":
        for name in _recorded():
            assert name in used, f"recording rule {name} is never used"


def test_dashboard_covers_the_operations_panels() -> None:
    used = set().union(*(promql_names(expr) for _, expr in _dashboard_exprs()))
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    for name in (
        "fraudstream_transactions_consumed_total",
        "fraudstream_transactions_scored_total",
        "fraudstream_end_to_end_latency_seconds",
        "fraudstream_decisions_total",
        "fraudstream_score",
        "fraudstream_dead_letters_total",
        "fraudstream_drift_events_total",
        "fraudstream_model_info",
        "fraudstream_online_quality",
        "fraudstream_consumer_lag_messages",
        "fraudstream_retrain_runs_total",
    ):
        assert name in used, f"no panel shows {name}"


def test_every_dashboard_panel_has_a_query_and_the_provisioned_datasource() -> None:
    doc = _dashboard()
    uid = _yaml(DATASOURCES)["datasources"][0]["uid"]
    panels = [p for p in _panels(doc["panels"]) if p["type"] != "row"]
    assert len(panels) >= 12
    ids = [p["id"] for p in _panels(doc["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{panel['title']}: empty query"
            assert target["datasource"]["uid"] == uid, panel["title"]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel.get("description"), f"{panel['title']} has no description"
    assert doc["uid"] and doc["title"]


# -- Prometheus rules and the runbook ---------------------------------------------------------
def test_every_alert_and_panel_is_described_in_operations_md() -> None:
    text = OPERATIONS.read_text()
    anchors = {
        re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")
        for heading in re.findall(r"^#+\s+(.+)$", text, flags=re.MULTILINE)
    }
    for group in _yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                runbook = rule["annotations"]["runbook_url"]
                path, _, anchor = runbook.partition("#")
                assert (ROOT / path).resolve() == OPERATIONS.resolve(), runbook
                assert anchor in anchors, f"{rule['alert']}: no section #{anchor}"
    for panel in _panels(_dashboard()["panels"]):
        if panel["type"] != "row":
            assert panel["title"] in text, f"panel '{panel['title']}' is not described"


# -- Kubernetes --------------------------------------------------------------------------------
def test_kustomization_lists_exactly_the_existing_manifests() -> None:
    kustomization = _yaml(K8S_BASE / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    for resource in listed:
        assert (K8S_BASE / resource).is_file(), f"kustomization lists missing {resource}"
    on_disk = {p.name for p in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - set(listed) == {SECRET_TEMPLATE.name}, "manifests not in kustomization"
    assert kustomization["namespace"] == "fraudstream"


def test_kubectl_kustomize_builds_the_base() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the other checks here still read every file)")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S_BASE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc}
    assert {"Deployment", "ConfigMap", "Service", "PersistentVolumeClaim"} <= kinds
    assert "Secret" not in kinds


def test_k8s_secret_template_holds_no_real_secret() -> None:
    doc = _yaml(SECRET_TEMPLATE)
    assert doc["kind"] == "Secret"
    assert "data" not in doc, "base64 data could hide a real value; use placeholders"
    values = doc["stringData"]
    assert set(values) == {"FRAUD_KAFKA_SASL_USERNAME", "FRAUD_KAFKA_SASL_PASSWORD", "ca.crt"}
    for key, value in values.items():
        assert re.fullmatch(r"<[^<>]+>", value), f"{key} is not a <placeholder>"
    for doc in _k8s_docs():  # nothing else carries secrets either
        assert doc["kind"] != "Secret"
        if doc["kind"] == "ConfigMap":
            assert not any("PASSWORD" in key or "SECRET" in key for key in doc["data"])


def test_k8s_settings_are_fraud_variables_from_the_configmap_and_the_secret() -> None:
    variables = {env_var(field) for field in Settings.model_fields}
    configmap = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")
    assert set(configmap["data"]) <= variables, set(configmap["data"]) - variables
    assert configmap["data"]["FRAUD_METRICS_PORT"] == str(METRICS_PORT)
    secret_keys = set(_yaml(SECRET_TEMPLATE)["stringData"])
    for doc in _k8s_docs():
        for container in _containers(doc):
            assert container["envFrom"] == [{"configMapRef": {"name": "fraudstream-config"}}]
            for entry in container.get("env", []):
                assert entry["name"] in variables, entry["name"]
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "fraudstream-kafka" and ref["key"] in secret_keys
            assert container["image"] == "fraudstream"  # the tag comes from kustomization


def test_k8s_containers_run_as_non_root_with_a_read_only_root() -> None:
    pods = [(d["metadata"]["name"], _pod_spec(d)) for d in _k8s_docs() if _pod_spec(d)]
    assert len(pods) >= 3
    for name, spec in pods:
        assert spec is not None
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context.get("runAsUser", 10001) != 0, name
            assert container["resources"]["requests"] and container["resources"]["limits"]
            mounted = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounted, f"{name}: a read-only root needs a writable /tmp"


def test_k8s_workers_and_retrain_probe_scrape_and_share_the_registry() -> None:
    worker, retrain = _workload("fraudstream-worker"), _workload("fraudstream-retrain")
    assert retrain["spec"]["replicas"] == 1 and retrain["spec"]["strategy"]["type"] == "Recreate"
    assert worker["spec"]["replicas"] >= 2
    pvc = next(d for d in _k8s_docs() if d["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    registry = next(d for d in _k8s_docs() if d["kind"] == "ConfigMap")["data"][
        "FRAUD_REGISTRY_DIR"
    ]
    services = [d for d in _k8s_docs() if d["kind"] == "Service"]
    for workload, read_only in ((worker, True), (retrain, False)):
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/component"] in JOBS  # job name for the alerts
        assert labels["app.kubernetes.io/part-of"] == "fraudstream"  # the scrape config keeps these
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(METRICS_PORT)
        (container,) = template["spec"]["containers"]
        assert container["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == registry]
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim == pvc["metadata"]["name"]
        assert mount.get("readOnly", False) is read_only
        assert any(
            s["spec"]["selector"].items() <= labels.items()
            and s["spec"]["ports"][0]["port"] == METRICS_PORT
            for s in services
        ), f"no metrics Service selects {workload['metadata']['name']}"


def test_k8s_scrape_config_gives_the_job_names_the_alerts_use() -> None:
    config = _yaml(DEPLOY / "k8s" / "prometheus-kubernetes.yml")
    (job,) = config["scrape_configs"]
    (relabel,) = [r for r in job["relabel_configs"] if r.get("target_label") == "job"]
    assert relabel["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    for component, name in JOBS.items():
        assert re.sub(r"\$1", component, relabel["replacement"]) == name
    alerts = ALERTS.read_text()
    assert all(f'job="{name}"' in alerts for name in JOBS.values())


# -- the image -----------------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert "HEALTHCHECK" in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    uid = re.search(r"useradd .*--uid (\d+)", text)
    assert uid and uid.group(1) == "10001", "compose chowns and k8s runs as uid 10001"
    assert re.search(r'^ENTRYPOINT \["fraudstream"\]', text, flags=re.MULTILINE)
