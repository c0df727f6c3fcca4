"""The Helm chart, rendered offline (Helm v4 as a library) and checked against Kubernetes schemas.

No cluster here: these tests check what `helm template` would produce, that it is valid
Kubernetes, and that the deployment behaviour promised in values.yaml is in the manifests.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

helm_chart = pytest.importorskip("helm_python.chart", reason="helm-python-sdk not installed")
helm_errors = pytest.importorskip("helm_python.errors")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "lethe"
VALUES_DIR = Path(__file__).with_name("values")
VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
KUBE_VERSION = "1.30"
RELEASE, NAMESPACE = "demo", "ai"

Manifest = dict[str, Any]

# Prometheus-operator's ServiceMonitor, reduced to the fields this chart writes.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "matchExpressions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["key", "operator"],
                                "additionalProperties": False,
                                "properties": {
                                    "key": {"type": "string"},
                                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                                    "values": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sourceLabels": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                        },
                                        "targetLabel": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _values(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / name).read_text()) or {}
    return loaded


def _render(values: dict[str, Any]) -> dict[str, str]:
    with helm_chart.Chart.load(CHART) as chart:
        rendered: dict[str, str] = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    return rendered


def _manifests(values: dict[str, Any]) -> list[Manifest]:
    docs: list[Manifest] = []
    for path, text in _render(values).items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@functools.cache
def _rendered_file(name: str) -> str:
    return json.dumps(_manifests(_values(name)))


def manifests_for(name: str) -> list[Manifest]:
    loaded: list[Manifest] = json.loads(_rendered_file(name))
    return loaded


def _kind(docs: list[Manifest], kind: str, component: str | None = None) -> list[Manifest]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]


def _one(docs: list[Manifest], kind: str, component: str | None = None) -> Manifest:
    (found,) = _kind(docs, kind, component)
    return found


def _service(docs: list[Manifest], component: str) -> Manifest:
    """The component's Service (not the engine's headless one)."""
    (found,) = [
        s
        for s in _kind(docs, "Service", component)
        if "lethe.io/service" not in s["metadata"]["labels"]
    ]
    return found


def _named(docs: list[Manifest], kind: str, suffix: str) -> Manifest:
    (found,) = [d for d in _kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return found


def _container(deployment: Manifest) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_errors.HelmError) as e:
        _render(values)
    return str(e.value)


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------
# Lint and schemas
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_chart_lints_without_errors(values_file: str) -> None:
    report = helm_chart.lint(CHART, _values(values_file), strict=True, namespace=NAMESPACE)
    serious = [m for m in report["messages"] if m["severity"] >= 2 and "icon" not in m["error"]]
    assert report["errors"] == [] and serious == [], report


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_manifest_is_valid_kubernetes(values_file: str) -> None:
    docs = manifests_for(values_file)
    assert docs
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_kubernetes_validation_catches_a_bad_manifest() -> None:
    """Guards the test above: the validator is strict on these manifests."""
    deployment = copy.deepcopy(_one(manifests_for("defaults.yaml"), "Deployment", "gateway"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSecs"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"gateway": {"replicas": "two"}}, "/gateway/replicas"),
        ({"gatway": {"replicas": 2}}, "gatway"),
        ({"engine": {"gpuMemoryUtilization": 1.5}}, "/engine/gpuMemoryUtilization"),
        ({"gateway": {"logLevel": "trace"}}, "/gateway/logLevel"),
        ({"policies": {"files": {"../escape.yaml": "x"}}}, "../escape.yaml"),
        ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    ],
)
def test_values_schema_rejects_bad_values_at_render_and_lint(
    override: dict[str, Any], complaint: str
) -> None:
    values = _merged(_values("defaults.yaml"), override)
    assert complaint in _render_error(values)
    report = helm_chart.lint(CHART, values)
    assert any(complaint in err for err in report["errors"]), report


def test_values_schema_accepts_the_chart_defaults_and_every_test_file() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    with helm_chart.Chart.load(CHART) as chart:
        for name in VALUES_FILES:
            chart.validate_schema(_values(name))


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"auth": {"apiKeys": ""}}, "auth.apiKeys"),
        ({"engine": {"model": {"existingClaim": ""}}}, "engine.model"),
        ({"engine": {"enabled": False}}, "gateway.upstream is required"),
        ({"gateway": {"drainSeconds": 300}}, "terminationGracePeriodSeconds"),
        ({"policies": {"files": {"a.yaml": "x"}, "existingConfigMap": "cm"}}, "not both"),
    ],
)
def test_inconsistent_values_fail_with_a_message_naming_the_fix(
    override: dict[str, Any], complaint: str
) -> None:
    values = _merged(_values("defaults.yaml"), override)
    assert complaint in _render_error(values)


# ---------------------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_every_pod_and_container_runs_restricted(values_file: str) -> None:
    deployments = _kind(manifests_for(values_file), "Deployment")
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["fsGroup"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "read-only root needs a writable /tmp"


@pytest.mark.parametrize("values_file", ["defaults.yaml", "all-features.yaml"])
def test_api_keys_reach_the_pod_as_files_never_as_env_values(values_file: str) -> None:
    values = _values(values_file)
    docs = manifests_for(values_file)
    gateway = _container(_one(docs, "Deployment", "gateway"))
    env_values = " ".join(_env(gateway).values())
    for line in values["auth"]["apiKeys"].splitlines():
        assert line.split(":")[0] not in env_values
    assert values["auth"]["adminKey"] not in env_values
    secret = _named(docs, "Secret", "-auth")
    assert secret["data"]["api-keys"]
    env = _env(gateway)
    assert env["LETHE_API_KEYS_FILE"] == "/etc/lethe/secrets/api-keys"
    assert env["LETHE_ADMIN_KEY_FILE"] == "/etc/lethe/secrets/admin-key"


def test_existing_secret_is_mounted_and_no_auth_secret_is_created() -> None:
    docs = manifests_for("existing-secret.yaml")
    assert [s["metadata"]["name"] for s in _kind(docs, "Secret")] == ["demo-lethe-engine-api-key"]
    pod = _one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "lethe-keys"
    assert "LETHE_API_KEYS_FILE" in _env(_container(_one(docs, "Deployment", "gateway")))


def test_auth_disabled_mounts_no_secret() -> None:
    docs = manifests_for("external-upstream.yaml")
    gateway = _one(docs, "Deployment", "gateway")
    assert not _kind(docs, "Secret")
    assert "LETHE_API_KEYS_FILE" not in _env(_container(gateway))
    assert "auth" not in {v["name"] for v in gateway["spec"]["template"]["spec"]["volumes"]}


# ---------------------------------------------------------------------------------------
# Probes, ports, services
# ---------------------------------------------------------------------------------------


def _probe_target(container: dict[str, Any], probe: str) -> tuple[str, int]:
    get = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
    return get["path"], port


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_gateway_probes_hit_healthz_and_readyz_on_the_serving_port(values_file: str) -> None:
    gateway = _container(_one(manifests_for(values_file), "Deployment", "gateway"))
    port = int(_env(gateway)["LETHE_PORT"])
    assert _probe_target(gateway, "startupProbe") == ("/healthz", port)
    assert _probe_target(gateway, "livenessProbe") == ("/healthz", port)
    assert _probe_target(gateway, "readinessProbe") == ("/readyz", port)


@pytest.mark.parametrize("values_file", ["defaults.yaml", "hub-model.yaml"])
def test_engine_probes_health_and_allows_a_long_start(values_file: str) -> None:
    engine = _container(_one(manifests_for(values_file), "Deployment", "engine"))
    args = engine["args"]
    port = int(args[args.index("--port") + 1])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert _probe_target(engine, probe) == ("/health", port)
    startup = engine["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_services_select_their_deployments_pods(values_file: str) -> None:
    docs = manifests_for(values_file)
    for service in _kind(docs, "Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        deployment = _one(docs, "Deployment", component)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        port_names = {p["name"] for p in _container(deployment)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_gateway_calls_the_engine_service_by_default() -> None:
    docs = manifests_for("defaults.yaml")
    engine_service = _service(docs, "engine")
    upstream = _env(_container(_one(docs, "Deployment", "gateway")))["LETHE_UPSTREAM"]
    name, port = engine_service["metadata"]["name"], engine_service["spec"]["ports"][0]["port"]
    assert upstream == f"http://{name}:{port}"


def test_gateway_only_install_points_at_the_external_upstream() -> None:
    docs = manifests_for("external-upstream.yaml")
    assert not _kind(docs, "Deployment", "engine")
    gateway = _container(_one(docs, "Deployment", "gateway"))
    assert _env(gateway)["LETHE_UPSTREAM"] == "http://vllm.inference.svc:8000"


# ---------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------


def test_engine_serves_the_pvc_model_with_runtime_lora_on_a_gpu() -> None:
    engine = _container(_one(manifests_for("all-features.yaml"), "Deployment", "engine"))
    assert engine["image"].startswith("vllm/vllm-openai:")
    args = engine["args"]
    assert args[args.index("--model") + 1] == "/models/models/smollm2-135m-instruct"
    assert "--enable-lora" in args and "--enable-prefix-caching" in args
    env = _env(engine)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m for m in engine["volumeMounts"]}
    assert mounts["/models"]["readOnly"] and mounts["/adapters"]["readOnly"]
    assert mounts["/dev/shm"]
    hf = next(e for e in engine["env"] if e["name"] == "HF_TOKEN")
    assert hf["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}


def test_engine_takes_a_hub_id_when_no_claim_is_given() -> None:
    docs = manifests_for("hub-model.yaml")
    engine = _container(_one(docs, "Deployment", "engine"))
    args = engine["args"]
    assert args[args.index("--model") + 1] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "--enable-lora" not in args
    assert "HF_HUB_OFFLINE" not in _env(engine)
    assert "/models" not in {m["mountPath"] for m in engine["volumeMounts"]}
    gateway_pod = _one(docs, "Deployment", "gateway")["spec"]["template"]["spec"]
    assert not [v for v in gateway_pod["volumes"] if "persistentVolumeClaim" in v]


# ---------------------------------------------------------------------------------------
# Policies: hot reload by default, roll on change as an option
# ---------------------------------------------------------------------------------------


def _annotations(docs: list[Manifest]) -> dict[str, str]:
    deployment = _one(docs, "Deployment", "gateway")
    found: dict[str, str] = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return found


def test_policy_checksum_annotation_only_when_roll_on_change() -> None:
    assert "checksum/policies" in _annotations(manifests_for("roll-on-change.yaml"))
    for name in VALUES_FILES:
        if name != "roll-on-change.yaml":
            assert "checksum/policies" not in _annotations(manifests_for(name)), name


def test_policy_checksum_follows_policy_content() -> None:
    values = _values("roll-on-change.yaml")
    before = _annotations(_manifests(values))["checksum/policies"]
    changed = copy.deepcopy(values)
    changed["policies"]["files"]["pii.yaml"] += "action: block\n"
    assert _annotations(_manifests(changed))["checksum/policies"] != before
    assert _annotations(_manifests(copy.deepcopy(values)))["checksum/policies"] == before


def test_policy_files_mount_as_a_directory_without_subpath_keeping_subfolders() -> None:
    docs = manifests_for("all-features.yaml")
    configmap = next(
        d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policies")
    )
    assert set(configmap["data"]) == {
        "harry-potter.yaml",
        "data__people.yaml",
        "data__protected-work.txt",
    }
    assert configmap["data"]["data__protected-work.txt"] == "It was a bright cold day in April.\n"
    gateway = _one(docs, "Deployment", "gateway")
    pod = gateway["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "policies")
    items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
    assert items["data__people.yaml"] == "data/people.yaml"
    mount = next(m for m in _container(gateway)["volumeMounts"] if m["name"] == "policies")
    assert "subPath" not in mount, "subPath mounts never receive ConfigMap updates"
    assert _env(_container(gateway))["LETHE_POLICIES"] == mount["mountPath"]


def test_without_policy_files_the_images_baked_policies_are_used() -> None:
    docs = manifests_for("defaults.yaml")
    gateway = _container(_one(docs, "Deployment", "gateway"))
    assert "LETHE_POLICIES" not in _env(gateway)
    assert not [d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("policies")]


def test_existing_policy_configmap_is_mounted_whole() -> None:
    gateway = _one(manifests_for("external-upstream.yaml"), "Deployment", "gateway")
    volume = next(
        v for v in gateway["spec"]["template"]["spec"]["volumes"] if v["name"] == "policies"
    )
    assert volume["configMap"] == {"name": "team-policies"}


# ---------------------------------------------------------------------------------------
# Draining streams on shutdown
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_grace_period_outlasts_the_prestop_drain(values_file: str) -> None:
    merged = helm_chart.Chart.load(CHART).merge_values(_values(values_file))["gateway"]
    gateway = _one(manifests_for(values_file), "Deployment", "gateway")
    pod = gateway["spec"]["template"]["spec"]
    drain = merged["preStopDelaySeconds"] + merged["drainSeconds"]
    assert pod["terminationGracePeriodSeconds"] > drain
    assert _env(_container(gateway))["LETHE_DRAIN_SECONDS"] == str(merged["drainSeconds"])
    script = _container(gateway)["lifecycle"]["preStop"]["exec"]["command"][2]
    assert f"time.monotonic() + {drain}" in script


class _Metrics(BaseHTTPRequestHandler):
    in_flight = 0.0

    def do_GET(self) -> None:
        body = f"# TYPE lethe_in_flight_requests gauge\nlethe_in_flight_requests {self.in_flight}\n"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, type[_Metrics]]]:
    handler = type("M", (_Metrics,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def _prestop_script(delay: int, drain: int) -> str:
    values = _values("defaults.yaml")
    values["gateway"] = {"preStopDelaySeconds": delay, "drainSeconds": drain}
    gateway = _container(_one(_manifests(values), "Deployment", "gateway"))
    command = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    script: str = command[2]
    return script


def _run_prestop(script: str, port: int) -> float:
    env = {**os.environ, "LETHE_PORT": str(port)}
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    return time.monotonic() - start


def test_prestop_returns_as_soon_as_nothing_is_in_flight(
    metrics_server: tuple[int, type[_Metrics]],
) -> None:
    port, handler = metrics_server
    handler.in_flight = 0.0
    assert _run_prestop(_prestop_script(delay=0, drain=20), port) < 10


def test_prestop_waits_for_in_flight_streams_up_to_the_drain_limit(
    metrics_server: tuple[int, type[_Metrics]],
) -> None:
    port, handler = metrics_server
    handler.in_flight = 2.0
    elapsed = _run_prestop(_prestop_script(delay=0, drain=3), port)
    assert 2.5 < elapsed < 15


# ---------------------------------------------------------------------------------------
# Optional objects
# ---------------------------------------------------------------------------------------


def test_optional_objects_are_absent_by_default() -> None:
    """Only the workloads and what secures them (NetworkPolicies, the engine's PDB and API key
    Secret) and the `helm test` Pod: no HPA, Ingress, route, monitors, rules or dashboard."""
    kinds = {d["kind"] for d in manifests_for("defaults.yaml")}
    assert kinds == {
        "Deployment",
        "Service",
        "Secret",
        "ServiceAccount",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Pod",
    }


def test_all_features_render_hpa_pdb_ingress_monitors_and_dashboard() -> None:
    docs = manifests_for("all-features.yaml")
    gateway = _one(docs, "Deployment", "gateway")
    assert "replicas" not in gateway["spec"], "the HPA owns the replica count"
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]
    pdb = _one(docs, "PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ingress = _one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert backend["path"] == "/v1"
    assert (
        backend["backend"]["service"]["name"]
        == _service(docs, "gateway")["metadata"]["name"]
    )
    dashboard = next(
        d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (ROOT / "helm" / "dashboards" / "lethe-grafana.json").read_text()
    assert json.loads(dashboard["data"]["lethe-grafana.json"]) == json.loads(shipped)


def test_service_monitors_scrape_metrics_on_the_named_service_port() -> None:
    docs = manifests_for("all-features.yaml")
    monitors = _kind(docs, "ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == {
        "gateway",
        "engine",
    }
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        service = _service(docs, component)
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in port_names


def test_notes_tell_how_to_reach_the_gateway_and_how_policies_reload() -> None:
    notes = _render(_values("defaults.yaml"))["lethe/templates/NOTES.txt"]
    assert f"{RELEASE}-lethe-gateway.{NAMESPACE}.svc:8000/v1" in notes
    assert "baked into the image" in notes
    roll = _render(_values("roll-on-change.yaml"))["lethe/templates/NOTES.txt"]
    assert "rollOnChange=true" in roll
    warn = _render(_values("external-upstream.yaml"))["lethe/templates/NOTES.txt"]
    assert "WARNING: auth.enabled=false" in warn


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    opaque = {"resources", "podSecurityContext", "securityContext", "strategy"}
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in opaque:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [
        key
        for key in _leaf_keys(defaults)
        if f"`{key}`" not in readme and f"`{key.rsplit('.', 1)[0]}.*`" not in readme
    ]
    assert missing == []
