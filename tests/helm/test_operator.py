"""The chart as an operator installs it: GPU engine from the hub with two replicas, adapters on a
shared claim, HPA, PDBs, ServiceMonitor and alerts, Ingress with TLS and an HTTPRoute, existing
Secrets, a separate metrics port, pinned images, extra volumes and sidecars.

Each point of issue 17 is asserted on the rendered manifests; where a manifest carries a
program (the `helm test` pod, the preStop drain) it is run against real local servers.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helm.test_chart import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    SERVICE_MONITOR_SCHEMA,
    VALUES_FILES,
    Manifest,
    _container,
    _env,
    _kind,
    _manifests,
    _merged,
    _named,
    _one,
    _render_error,
    _service,
    _values,
    helm_chart,
    kubernetes_validate,
)

DIGEST = "sha256:" + "ab" * 32
ENGINE_DIGEST = "sha256:" + "cd" * 32

OPERATOR_VALUES = f"""
gateway:
  replicas: 3
  image:
    repository: registry.example.com/ml/lethe-gateway
    tag: "0.1.0"
    digest: "{DIGEST}"
  metricsPort: 9090
  servedModels: [llama-3.1-8b]
  extraEnv:
    - name: LETHE_FILTER_THREADS
      value: "4"
  extraVolumes:
    - name: corpora
      persistentVolumeClaim:
        claimName: lethe-corpora
        readOnly: true
  extraVolumeMounts:
    - name: corpora
      mountPath: /var/lib/lethe/corpora
      readOnly: true
  extraContainers:
    - name: log-shipper
      image: registry.example.com/ops/shipper:1.2
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  initContainers:
    - name: wait-for-corpora
      image: registry.example.com/ops/wait:1.0
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
auth:
  existingSecret: lethe-keys
engine:
  replicas: 2
  image:
    digest: "{ENGINE_DIGEST}"
  model:
    hubId: meta-llama/Llama-3.1-8B-Instruct
  servedModelName: llama-3.1-8b
  maxModelLen: 8192
  hfTokenSecret:
    name: hf-token
  apiKey:
    existingSecret: lethe-engine-key
  lora:
    existingClaim: lethe-adapters
  modelCache:
    accessModes: [ReadWriteMany]
    storageClassName: efs
    size: 100Gi
  extraVolumes:
    - name: nccl
      emptyDir: {{}}
  extraVolumeMounts:
    - name: nccl
      mountPath: /var/run/nccl
  extraEnv:
    - name: VLLM_LOGGING_LEVEL
      value: INFO
  resources:
    requests: {{cpu: "8", memory: 64Gi}}
    limits: {{memory: 96Gi, nvidia.com/gpu: 1}}
autoscaling:
  enabled: true
  minReplicas: 3
  maxReplicas: 12
podDisruptionBudget:
  enabled: true
serviceMonitor:
  enabled: true
  labels:
    release: kube-prometheus-stack
prometheusRule:
  enabled: true
  labels:
    release: kube-prometheus-stack
ingress:
  enabled: true
  className: nginx
  annotations:
    nginx.ingress.kubernetes.io/proxy-buffering: "off"
  hosts:
    - host: llm.example.com
      paths:
        - path: /v1
          pathType: Prefix
  tls:
    - secretName: llm-example-com-tls
      hosts: [llm.example.com]
httpRoute:
  enabled: true
  parentRefs:
    - name: public
      namespace: gateways
  hostnames: [llm.example.com]
  timeouts:
    request: 600s
networkPolicy:
  monitoringNamespace: monitoring
  gateway:
    from:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: ingress-nginx
dashboards:
  enabled: true
"""

#: The same operator with the model on a shared claim instead of the hub.
CLAIM_OVERRIDE = {"engine": {"model": {"hubId": "", "existingClaim": "models-rox"}}}

PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z]+$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                                        "labels": {"type": "object"},
                                        "annotations": {"type": "object"},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}

HTTP_ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["parentRefs", "rules"],
            "properties": {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["name"]},
                },
                "hostnames": {"type": "array", "items": {"type": "string"}},
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matches": {"type": "array"},
                            "backendRefs": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "port": {"type": "integer"},
                                    },
                                },
                            },
                            "timeouts": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "request": {"type": "string"},
                                    "backendRequest": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
CRD_SCHEMAS = {
    "ServiceMonitor": SERVICE_MONITOR_SCHEMA,
    "PrometheusRule": PROMETHEUS_RULE_SCHEMA,
    "HTTPRoute": HTTP_ROUTE_SCHEMA,
}


def operator() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(OPERATOR_VALUES)
    return loaded


def operator_with(override: dict[str, Any]) -> dict[str, Any]:
    return _merged(operator(), override)


@pytest.fixture(scope="module")
def docs() -> list[Manifest]:
    return _manifests(operator())


@pytest.fixture(scope="module")
def claim_docs() -> list[Manifest]:
    return _manifests(operator_with(CLAIM_OVERRIDE))


def _pod(deployment: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _main(docs: list[Manifest], component: str) -> dict[str, Any]:
    pod = _pod(_one(docs, "Deployment", component))
    name = "gateway" if component == "gateway" else "vllm"
    (container,) = [c for c in pod["containers"] if c["name"] == name]
    result: dict[str, Any] = container
    return result


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _volumes(deployment: Manifest) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _pod(deployment)["volumes"]}


# ---------------------------------------------------------------------------------------
# The whole render: lint, Kubernetes schemas, custom resources
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["hub", "claim"])
def test_operator_values_lint_and_validate_strictly(variant: str) -> None:
    values = operator() if variant == "hub" else operator_with(CLAIM_OVERRIDE)
    report = helm_chart.lint(CHART, values, strict=True, namespace=NAMESPACE)
    serious = [m for m in report["messages"] if m["severity"] >= 2 and "icon" not in m["error"]]
    assert report["errors"] == [] and serious == [], report
    docs = _manifests(values)
    kinds = {d["kind"] for d in docs}
    assert {"PrometheusRule", "HTTPRoute", "ServiceMonitor", "NetworkPolicy", "Pod"} <= kinds
    for doc in docs:
        schema = CRD_SCHEMAS.get(doc["kind"])
        if schema is not None:
            jsonschema.validate(doc, schema)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_custom_resource_schemas_catch_a_bad_document(docs: list[Manifest]) -> None:
    """Guards the test above: the reduced CRD schemas are strict on these documents."""
    rule = copy.deepcopy(_one(docs, "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    route = copy.deepcopy(_one(docs, "HTTPRoute"))
    route["spec"]["rules"][0]["timeout"] = "600s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, HTTP_ROUTE_SCHEMA)


# ---------------------------------------------------------------------------------------
# A private engine: NetworkPolicy, API key
# ---------------------------------------------------------------------------------------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_admits(
    peer: dict[str, Any], own_ns: str, ns: str, labels: dict[str, str]
) -> bool:
    ns_labels = {"kubernetes.io/metadata.name": ns}
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], ns_labels):
            return False
        return _matches(peer.get("podSelector", {}), labels)
    if "podSelector" in peer:
        return ns == own_ns and _matches(peer["podSelector"], labels)
    raise AssertionError(f"peer kind not modelled: {peer}")


def allowed(
    docs: list[Manifest], target: dict[str, str], port: str, ns: str, labels: dict[str, str]
) -> bool:
    """NetworkPolicy semantics (ingress): isolated when a policy selects the pod; then allowed
    when some rule's ports and peers admit the connection."""
    policies = _kind(docs, "NetworkPolicy")
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], target)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(_peer_admits(p, NAMESPACE, ns, labels) for p in peers):
                return True
    return False


def _pod_labels(docs: list[Manifest], component: str) -> dict[str, str]:
    labels: dict[str, str] = _one(docs, "Deployment", component)["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


OUTSIDER = {"app": "curious"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


@pytest.mark.parametrize(
    ("source_ns", "source", "port", "expected"),
    [
        (NAMESPACE, "gateway", "http", True),
        ("monitoring", "prometheus", "http", True),
        (NAMESPACE, "outsider", "http", False),
        (NAMESPACE, "test", "http", False),
        ("ingress-nginx", "outsider", "http", False),
        ("other-team", "outsider", "http", False),
    ],
)
def test_only_gateway_pods_and_monitoring_reach_the_engine(
    docs: list[Manifest], source_ns: str, source: str, port: str, expected: bool
) -> None:
    labels = {
        "gateway": _pod_labels(docs, "gateway"),
        "prometheus": PROMETHEUS,
        "outsider": OUTSIDER,
        "test": _one(docs, "Pod")["metadata"]["labels"],
    }[source]
    engine = _pod_labels(docs, "engine")
    assert allowed(docs, engine, port, source_ns, labels) is expected


@pytest.mark.parametrize(
    ("source_ns", "labels", "port", "expected"),
    [
        ("ingress-nginx", OUTSIDER, "http", True),
        ("other-team", OUTSIDER, "http", False),
        ("monitoring", PROMETHEUS, "metrics", True),
        ("ingress-nginx", OUTSIDER, "metrics", False),
        (NAMESPACE, OUTSIDER, "metrics", False),
    ],
)
def test_gateway_serves_configured_peers_and_metrics_only_to_monitoring(
    docs: list[Manifest], source_ns: str, labels: dict[str, str], port: str, expected: bool
) -> None:
    gateway = _pod_labels(docs, "gateway")
    assert allowed(docs, gateway, port, source_ns, labels) is expected


def test_the_helm_test_pod_may_call_a_gateway_restricted_to_peers(docs: list[Manifest]) -> None:
    test_pod = _one(docs, "Pod")["metadata"]["labels"]
    assert allowed(docs, _pod_labels(docs, "gateway"), "http", NAMESPACE, test_pod)


def test_by_default_anyone_may_call_the_gateway_but_not_the_engine() -> None:
    docs = _manifests(_values("defaults.yaml"))
    gateway, engine = _pod_labels(docs, "gateway"), _pod_labels(docs, "engine")
    assert allowed(docs, gateway, "http", "anywhere", OUTSIDER)
    assert not allowed(docs, engine, "http", NAMESPACE, OUTSIDER)
    assert allowed(docs, engine, "http", NAMESPACE, gateway)


def test_network_policies_can_be_turned_off() -> None:
    docs = _manifests(_merged(_values("defaults.yaml"), {"networkPolicy": {"enabled": False}}))
    assert not _kind(docs, "NetworkPolicy")


@pytest.mark.parametrize("variant", ["existing-secret", "chart-secret"])
def test_engine_key_comes_from_one_secret_that_the_gateway_sends(variant: str) -> None:
    values = operator()
    if variant == "chart-secret":
        values["engine"]["apiKey"] = {"existingSecret": "", "value": "k-123"}
    docs = _manifests(values)
    engine = _main(docs, "engine")
    key_env = next(e for e in engine["env"] if e["name"] == "VLLM_API_KEY")
    ref = key_env["valueFrom"]["secretKeyRef"]
    secret_name = f"{RELEASE}-lethe-engine-api-key"
    if variant == "existing-secret":
        secret_name = "lethe-engine-key"
    assert ref == {"name": secret_name, "key": "api-key"}
    assert "k-123" not in json.dumps(_one(docs, "Deployment", "engine"))
    gateway = _one(docs, "Deployment", "gateway")
    key_file = _env(_main(docs, "gateway"))["LETHE_UPSTREAM_API_KEY_FILE"]
    mount = _mounts(_main(docs, "gateway"))[str(Path(key_file).parent)]
    volume = _volumes(gateway)[mount["name"]]
    assert volume["secret"]["secretName"] == secret_name
    assert [i["path"] for i in volume["secret"]["items"]] == [Path(key_file).name]
    if variant == "chart-secret":
        secret = _named(docs, "Secret", "-engine-api-key")
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        import base64

        assert base64.b64decode(secret["data"]["api-key"]).decode() == "k-123"
    else:
        assert not [s for s in _kind(docs, "Secret")], "existing Secrets only"


def test_a_generated_engine_key_is_random_and_long() -> None:
    import base64

    keys = {
        base64.b64decode(_named(_manifests(_values("defaults.yaml")), "Secret", "-engine-api-key")[
            "data"
        ]["api-key"])
        for _ in range(2)
    }
    assert len(keys) == 2 and all(len(k) == 48 for k in keys)


def test_an_external_engine_key_reaches_the_gateway_without_an_engine() -> None:
    values = _merged(
        _values("external-upstream.yaml"), {"engine": {"apiKey": {"existingSecret": "vllm-key"}}}
    )
    docs = _manifests(values)
    assert "LETHE_UPSTREAM_API_KEY_FILE" in _env(_main(docs, "gateway"))
    assert _volumes(_one(docs, "Deployment", "gateway"))["engine-api-key"]["secret"][
        "secretName"
    ] == "vllm-key"
    assert not _kind(docs, "Secret")


def test_metrics_port_is_its_own_service_port_and_the_monitors_scrape_it(
    docs: list[Manifest],
) -> None:
    gateway = _main(docs, "gateway")
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    assert ports["metrics"] == 9090 and _env(gateway)["LETHE_METRICS_PORT"] == "9090"
    service = _service(docs, "gateway")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["metrics"] == 9090
    monitor = next(
        m for m in _kind(docs, "ServiceMonitor") if m["metadata"]["labels"][
            "app.kubernetes.io/component"
        ] == "gateway"
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    for m in _kind(docs, "ServiceMonitor"):
        for endpoint in m["spec"]["endpoints"]:
            assert {"targetLabel": "release", "sourceLabels": [
                "__meta_kubernetes_service_label_app_kubernetes_io_instance"
            ]} in endpoint["relabelings"]


# ---------------------------------------------------------------------------------------
# Engine availability: PDB, progress deadline, cache, strategy, security, digests
# ---------------------------------------------------------------------------------------


def test_engine_pdb_takes_one_engine_at_a_time(docs: list[Manifest]) -> None:
    pdb = _one(docs, "PodDisruptionBudget", "engine")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {k: v for k, v in _pod_labels(docs, "engine").items()}},
    }


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_engine_progress_deadline_outlasts_its_start_up(values_file: str) -> None:
    docs = _manifests(_values(values_file))
    for engine in _kind(docs, "Deployment", "engine"):
        startup = _container(engine)["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert engine["spec"]["progressDeadlineSeconds"] >= budget >= 600


def test_a_progress_deadline_shorter_than_start_up_fails_the_render() -> None:
    values = _merged(_values("defaults.yaml"), {"engine": {"progressDeadlineSeconds": 600}})
    assert "progressDeadlineSeconds (600)" in _render_error(values)


def test_hub_model_lands_on_a_persistent_cache_not_an_empty_dir(docs: list[Manifest]) -> None:
    engine = _one(docs, "Deployment", "engine")
    hf_home = _env(_main(docs, "engine"))["HF_HOME"]
    mount = _mounts(_main(docs, "engine"))[hf_home]
    volume = _volumes(engine)[mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = _named(docs, "PersistentVolumeClaim", "-model-cache")
    assert pvc["metadata"]["name"] == claim
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "efs"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_a_model_on_a_claim_needs_no_cache_claim(claim_docs: list[Manifest]) -> None:
    assert not _kind(claim_docs, "PersistentVolumeClaim")
    assert "HF_HUB_OFFLINE" in _env(_main(claim_docs, "engine"))


def test_two_replicas_sharing_a_read_write_once_cache_fail_the_render() -> None:
    values = operator_with({"engine": {"modelCache": {"accessModes": ["ReadWriteOnce"]}}})
    assert "cannot share a ReadWriteOnce claim" in _render_error(values)


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"), [(1, 1, 0), (2, 0, 1), (4, 0, 1)]
)
def test_engine_rollout_keeps_one_engine_serving(
    replicas: int, surge: int, unavailable: int
) -> None:
    docs = _manifests(operator_with({"engine": {"replicas": replicas}}))
    strategy = _one(docs, "Deployment", "engine")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }
    assert replicas - unavailable >= 1, "an upgrade never takes every engine away"


def test_an_explicit_engine_strategy_is_used_as_written() -> None:
    docs = _manifests(operator_with({"engine": {"replicas": 1, "strategy": {"type": "Recreate"}}}))
    assert _one(docs, "Deployment", "engine")["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("values_file", [*VALUES_FILES, "operator"])
def test_engine_runs_as_its_own_high_uid_and_hf_token_only_from_a_secret(values_file: str) -> None:
    docs = _manifests(operator() if values_file == "operator" else _values(values_file))
    for engine in _kind(docs, "Deployment", "engine"):
        security = _pod(engine)["securityContext"]
        assert security["runAsUser"] >= 10000 and security["runAsUser"] != 1000
        for container in _pod(engine)["containers"] + _pod(engine).get("initContainers", []):
            for env in container.get("env", []):
                if env["name"] in ("HF_TOKEN", "VLLM_API_KEY"):
                    assert set(env) == {"name", "valueFrom"}
                    assert "secretKeyRef" in env["valueFrom"]


def test_a_plain_hf_token_in_extra_env_fails_the_render() -> None:
    values = operator_with({})
    values["engine"]["extraEnv"] = [{"name": "HF_TOKEN", "value": "hf_leaked"}]
    assert "HF_TOKEN must not be a plain value" in _render_error(values)


def test_images_are_pinned_by_digest_over_the_tag(docs: list[Manifest]) -> None:
    assert _main(docs, "gateway")["image"] == f"registry.example.com/ml/lethe-gateway@{DIGEST}"
    assert _main(docs, "engine")["image"] == f"vllm/vllm-openai@{ENGINE_DIGEST}"
    assert _one(docs, "Pod")["spec"]["containers"][0]["image"].endswith(f"@{DIGEST}")


def test_a_malformed_digest_is_refused_by_the_schema() -> None:
    values = operator_with({"gateway": {"image": {"digest": "sha256:short"}}})
    assert "/gateway/image/digest" in _render_error(values)


def test_every_container_of_every_pod_runs_restricted(docs: list[Manifest]) -> None:
    pods = [_pod(d) for d in _kind(docs, "Deployment")] + [d["spec"] for d in _kind(docs, "Pod")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]


# ---------------------------------------------------------------------------------------
# Auth secret rotation
# ---------------------------------------------------------------------------------------


def _auth_checksum(values: dict[str, Any]) -> str | None:
    annotations = (
        _one(_manifests(values), "Deployment", "gateway")["spec"]["template"]["metadata"].get(
            "annotations"
        )
        or {}
    )
    found: str | None = annotations.get("checksum/auth")
    return found


def test_gateway_pods_roll_when_the_chart_managed_keys_change() -> None:
    values = _values("defaults.yaml")
    before = _auth_checksum(values)
    rotated = _merged(values, {"auth": {"apiKeys": "sk-rotated:team-a"}})
    assert before and _auth_checksum(rotated) not in (None, before)
    assert _auth_checksum(copy.deepcopy(values)) == before


def test_an_existing_secret_gets_no_checksum_and_no_admin_key_requirement(
    docs: list[Manifest],
) -> None:
    assert _auth_checksum(operator()) is None
    env = _env(_main(docs, "gateway"))
    # The file may be absent from the Secret: the gateway then starts with admin routes off.
    assert env["LETHE_ADMIN_KEY_FILE"] == "/etc/lethe/secrets/admin-key"
    volume = _volumes(_one(docs, "Deployment", "gateway"))["auth"]
    assert "items" not in volume["secret"], "listing admin-key would fail the mount without it"


# ---------------------------------------------------------------------------------------
# Extras: volumes, env, sidecars, init containers
# ---------------------------------------------------------------------------------------


def test_extra_volumes_env_and_containers_reach_both_pods(docs: list[Manifest]) -> None:
    gateway_dep = _one(docs, "Deployment", "gateway")
    engine_dep = _one(docs, "Deployment", "engine")
    gateway_pod, engine_pod = _pod(gateway_dep), _pod(engine_dep)
    assert "corpora" in _volumes(gateway_dep)
    assert "/var/lib/lethe/corpora" in _mounts(_main(docs, "gateway"))
    assert [c["name"] for c in gateway_pod["containers"]] == ["gateway", "log-shipper"]
    assert "wait-for-corpora" in [c["name"] for c in gateway_pod["initContainers"]]
    assert _env(_main(docs, "gateway"))["LETHE_FILTER_THREADS"] == "4"
    assert "nccl" in _volumes(engine_dep)
    assert "/var/run/nccl" in _mounts(_main(docs, "engine"))
    assert _env(_main(docs, "engine"))["VLLM_LOGGING_LEVEL"] == "INFO"
    engine_init = [c["name"] for c in engine_pod.get("initContainers", [])]
    extra = operator_with({"engine": {"initContainers": [{"name": "warm", "image": "x:1"}]}})
    extra_init = [c["name"] for c in _pod(_one(_manifests(extra), "Deployment", "engine"))[
        "initContainers"
    ]]
    assert extra_init == [*engine_init, "warm"]


# ---------------------------------------------------------------------------------------
# Adapters on every engine
# ---------------------------------------------------------------------------------------


def test_adapter_store_is_mounted_on_gateway_and_engine_with_mapped_paths(
    docs: list[Manifest],
) -> None:
    gateway_env = _env(_main(docs, "gateway"))
    gateway_mount = _mounts(_main(docs, "gateway"))[gateway_env["LETHE_ADAPTER_DIR"]]
    engine_mount = _mounts(_main(docs, "engine"))[gateway_env["LETHE_ENGINE_ADAPTER_DIR"]]
    assert gateway_mount["readOnly"] and engine_mount["readOnly"]
    assert gateway_env["LETHE_ADAPTER_DIR"] != gateway_env["LETHE_ENGINE_ADAPTER_DIR"]
    gateway_claim = _volumes(_one(docs, "Deployment", "gateway"))[gateway_mount["name"]]
    engine_claim = _volumes(_one(docs, "Deployment", "engine"))[engine_mount["name"]]
    assert (
        gateway_claim["persistentVolumeClaim"]["claimName"]
        == engine_claim["persistentVolumeClaim"]["claimName"]
        == "lethe-adapters"
    )
    assert float(gateway_env["LETHE_ADAPTER_SYNC_INTERVAL_S"]) > 0


def test_gateway_discovers_every_engine_pod_through_a_headless_service(
    docs: list[Manifest],
) -> None:
    url = _env(_main(docs, "gateway"))["LETHE_ENGINE_DISCOVERY"]
    match = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)", url)
    assert match, url
    name, namespace, port = match.groups()
    (headless,) = [s for s in _kind(docs, "Service", "engine") if s["metadata"]["name"] == name]
    assert namespace == NAMESPACE
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= _pod_labels(docs, "engine").items()
    engine_ports = {p["name"]: p["containerPort"] for p in _main(docs, "engine")["ports"]}
    assert int(port) == engine_ports["http"]
    # Completions still go through the engine Service.
    service = _service(docs, "engine")
    upstream = _env(_main(docs, "gateway"))["LETHE_UPSTREAM"]
    assert upstream == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def test_no_adapter_store_means_no_adapter_mounts() -> None:
    docs = _manifests(_values("defaults.yaml"))
    env = _env(_main(docs, "gateway"))
    assert "LETHE_ADAPTER_DIR" not in env and "LETHE_ENGINE_ADAPTER_DIR" not in env


# ---------------------------------------------------------------------------------------
# The served model's tokenizer
# ---------------------------------------------------------------------------------------


def test_tokenizer_is_the_engines_model_directory_on_a_shared_claim(
    claim_docs: list[Manifest],
) -> None:
    gateway = _main(claim_docs, "gateway")
    engine = _main(claim_docs, "engine")
    tokenizer_dir = _env(gateway)["LETHE_TOKENIZER_DIR"]
    model_arg = engine["args"][engine["args"].index("--model") + 1]
    engine_mount = next(m for m in engine["volumeMounts"] if model_arg.startswith(m["mountPath"]))
    gateway_mount = next(
        m for m in gateway["volumeMounts"] if tokenizer_dir.startswith(m["mountPath"] + "/")
    )
    assert tokenizer_dir.removeprefix(gateway_mount["mountPath"]) == model_arg.removeprefix(
        engine_mount["mountPath"]
    )
    gateway_claim = _volumes(_one(claim_docs, "Deployment", "gateway"))[gateway_mount["name"]]
    engine_claim = _volumes(_one(claim_docs, "Deployment", "engine"))[engine_mount["name"]]
    assert gateway_claim["persistentVolumeClaim"] == engine_claim["persistentVolumeClaim"]
    assert gateway_claim["persistentVolumeClaim"]["claimName"] == "models-rox"
    assert gateway_mount["readOnly"] is True
    assert _env(gateway)["LETHE_TOKENIZER_CHECK"] == "require"


def test_tokenizer_of_a_hub_model_is_fetched_by_an_init_container(docs: list[Manifest]) -> None:
    pod = _pod(_one(docs, "Deployment", "gateway"))
    (fetch,) = [c for c in pod["initContainers"] if c["name"] == "fetch-tokenizer"]
    env = {e["name"]: e for e in fetch["env"]}
    assert env["MODEL_ID"]["value"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert env["HF_HUB_OFFLINE"]["value"] == "0"
    target = env["TARGET"]["value"]
    assert _env(_main(docs, "gateway"))["LETHE_TOKENIZER_DIR"] == target
    assert target in _mounts(fetch) and _mounts(_main(docs, "gateway"))[target]["readOnly"]
    assert "snapshot_download" in fetch["args"][0] and "*.safetensors" not in fetch["args"][0]


def test_an_explicit_tokenizer_dir_wins() -> None:
    docs = _manifests(operator_with({"tokenizer": {"dir": "/opt/lethe/cache/tok"}}))
    assert _env(_main(docs, "gateway"))["LETHE_TOKENIZER_DIR"] == "/opt/lethe/cache/tok"
    pod = _pod(_one(docs, "Deployment", "gateway"))
    assert "fetch-tokenizer" not in [c["name"] for c in pod.get("initContainers", [])]


# ---------------------------------------------------------------------------------------
# Alerts, route, helm test
# ---------------------------------------------------------------------------------------


def _exposed_gateway_series() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.adapters import AdapterCollector, AdapterInfo
    from gateway.metrics import Metrics
    from gateway.upstream import PoolStats

    class OneAdapter:
        def list(self) -> Sequence[AdapterInfo]:
            return [AdapterInfo("lethe-p", "p", "/a", "loaded")]

        def wanted(self) -> Sequence[str]:
            return ["p"]

    metrics = Metrics()
    metrics.fail_open.labels(policy="p", filter="f").inc()
    metrics.requests.labels(route="/v1/completions", model="m", status="200").inc()
    metrics.watch_upstream_pool(lambda: PoolStats(1, 8, 0, 0))
    metrics.registry.register(AdapterCollector(OneAdapter()))
    body = metrics.render()[0].decode()
    return {s.name for f in text_string_to_metric_families(body) for s in f.samples}


def test_alerts_cover_fail_open_engine_errors_adapters_and_pool_saturation(
    docs: list[Manifest],
) -> None:
    rule = _one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "LetheFailOpen",
        "LetheUpstreamErrors",
        "LetheAdapterLoadFailures",
        "LetheAdapterMissingOnEngine",
        "LetheUpstreamPoolSaturated",
    } <= set(alerts)
    exposed = _exposed_gateway_series()
    for name, alert in alerts.items():
        expr = alert["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        series = set(re.findall(r"\blethe_[a-z0-9_]+", expr))
        assert series and series <= exposed, (name, series - exposed)
        for selector in re.findall(r"lethe_[a-z0-9_]+\{([^}]*)\}", expr):
            assert f'namespace="{NAMESPACE}"' in selector and f'release="{RELEASE}"' in selector
    assert "0.05" in alerts["LetheUpstreamErrors"]["expr"]
    assert 'result="failure"' in alerts["LetheAdapterLoadFailures"]["expr"]


def test_http_route_sends_v1_to_the_gateway_service(docs: list[Manifest]) -> None:
    route = _one(docs, "HTTPRoute")
    service = _service(docs, "gateway")
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    assert rule["backendRefs"] == [
        {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    ]
    assert rule["timeouts"] == {"request": "600s"}
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]


def test_helm_test_pod_is_a_hook(docs: list[Manifest]) -> None:
    pod = _one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    env = _env(pod["spec"]["containers"][0])
    service = _service(docs, "gateway")
    assert env["GATEWAY_URL"] == (
        f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )
    assert env["MODEL"] == "llama-3.1-8b"
    secret_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "key")
    assert secret_volume["secret"]["secretName"] == "lethe-keys"


def _test_program(docs: list[Manifest]) -> tuple[str, dict[str, str]]:
    container = _one(docs, "Pod")["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    return container["args"][0], _env(container)


@pytest.mark.parametrize(("key", "passes"), [("sk-test-1", True), ("sk-wrong", False)])
def test_helm_test_program_sends_one_completion_through_a_real_gateway(
    fake_upstream: Any, tmp_path: Path, key: str, passes: bool
) -> None:
    from tests.servers import run_gateway

    program, env = _test_program(_manifests(_values("defaults.yaml")))
    keys = tmp_path / "api-keys"
    keys.write_text("sk-test-1:team-a\n")
    mounted = tmp_path / "mounted-api-keys"
    mounted.write_text(f"{key}:team-a\n")
    with run_gateway(upstream=fake_upstream.url, api_keys_file=keys) as gw:
        env.update(GATEWAY_URL=gw.url, KEY_FILE=str(mounted))
        proc = subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr
    if passes:
        assert "finish_reason stop" in proc.stdout
        assert fake_upstream.recorder.requests[-1]["model"] == "fake-model"
        assert fake_upstream.recorder.requests[-1]["max_tokens"] == int(env["MAX_TOKENS"])


# ---------------------------------------------------------------------------------------
# The drain reads the metrics port when it is separate
# ---------------------------------------------------------------------------------------


class _Idle(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE lethe_in_flight_requests gauge\nlethe_in_flight_requests 0.0\n"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_only() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Idle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_prestop_drain_polls_the_separate_metrics_port(
    docs: list[Manifest], metrics_only: int
) -> None:
    import time

    from stack.processes import free_port

    values = operator_with({"gateway": {"preStopDelaySeconds": 0, "drainSeconds": 20}})
    script = _main(_manifests(values), "gateway")["lifecycle"]["preStop"]["exec"]["command"][2]
    env = {**os.environ, "LETHE_PORT": str(free_port()), "LETHE_METRICS_PORT": str(metrics_only)}
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert time.monotonic() - started < 10, "it waited on the serving port, which has no metrics"


def test_rendered_names_stay_within_kubernetes_limits(docs: list[Manifest]) -> None:
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
