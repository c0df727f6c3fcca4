"""The Grafana dashboard queries only metrics the gateway exposes, and covers all of them."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.adapters import AdapterCollector, AdapterInfo
from gateway.metrics import Metrics
from gateway.upstream import PoolStats

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "dashboards" / "lethe-grafana.json"
CHART_COPY = ROOT / "helm" / "lethe" / "dashboards" / "lethe-grafana.json"
METRIC_NAME = re.compile(r"\blethe_[a-z0-9_]+")
VLLM_NAME = re.compile(r"\bvllm:[a-z0-9_]+")
# Counters and histograms are exposed with these suffixes on the declared name.
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


class _OneAdapter:
    """The registry's read side, holding one wanted adapter."""

    def list(self) -> Sequence[AdapterInfo]:
        return [AdapterInfo("lethe-p", "p", "/a/p", "loaded")]

    def wanted(self) -> Sequence[str]:
        return ["p"]


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def _exposed_series() -> set[str]:
    metrics = Metrics()
    metrics.requests.labels(route="/v1/completions", model="m", status="200").inc()
    metrics.decisions.labels(policy="p", stage="output", filter="f", action="block").inc()
    metrics.filter_duration.labels(filter="f", stage="output").observe(0.01)
    metrics.fail_open.labels(policy="p", filter="f").inc()
    metrics.request_duration.labels(route="/v1/completions").observe(1.0)
    metrics.ttft.labels(route="/v1/completions").observe(0.1)
    metrics.set_policy_set("h", 1)
    metrics.watch_upstream_pool(lambda: PoolStats(1, 8, 0, 0))
    metrics.registry.register(AdapterCollector(_OneAdapter()))  # as the runtime registers it
    body = metrics.render()[0].decode()
    return {s.name for f in text_string_to_metric_families(body) for s in f.samples}


def test_chart_carries_the_same_dashboard() -> None:
    assert CHART_COPY.read_text() == DASHBOARD.read_text()


def test_every_queried_series_is_exposed_by_the_gateway() -> None:
    exposed = _exposed_series()
    queried = {name for expr in _exprs() for name in METRIC_NAME.findall(expr)}
    assert queried, "dashboard queries no lethe_ series"
    assert queried <= exposed, queried - exposed


@pytest.mark.parametrize(
    "family",
    [
        "lethe_requests_total",
        "lethe_request_duration_seconds_bucket",
        "lethe_time_to_first_token_seconds_bucket",
        "lethe_in_flight_requests",
        "lethe_upstream_errors_total",
        "lethe_policy_decisions_total",
        "lethe_filter_duration_seconds_bucket",
        "lethe_stream_holdback_characters_bucket",
        "lethe_stream_holdback_delay_seconds_bucket",
        "lethe_fail_open_total",
        "lethe_config_reloads_total",
        "lethe_adapter_loads_total",
        "lethe_policy_set_info",
        "lethe_adapter_engines_missing",
        "lethe_upstream_connections_in_use",
    ],
)
def test_each_gateway_metric_has_a_panel(family: str) -> None:
    assert any(family in expr for expr in _exprs())


def test_quantiles_come_from_bucket_rates_aggregated_by_le() -> None:
    for expr in _exprs():
        if "histogram_quantile" in expr:
            assert re.search(r"sum by \(le[,)]", expr), expr
            assert "_bucket{" in expr and "rate(" in expr, expr


def test_queries_are_balanced_and_filtered_by_namespace_and_release() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "release"} <= set(variables)
    # The release list follows the namespace choice; the label comes from the ServiceMonitors.
    assert 'namespace=~"$namespace"' in variables["release"]["definition"]
    assert variables["release"]["definition"].endswith(", release)")
    for expr in _exprs():
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("{") == expr.count("}"), expr
        selectors = re.findall(r"(?:lethe_|vllm:)[a-z0-9_:]+\{([^}]*)\}", expr)
        assert selectors, expr
        for selector in selectors:
            assert 'namespace=~"$namespace"' in selector, expr
            assert 'release=~"$release"' in selector, expr


@pytest.mark.parametrize(
    "series",
    [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_bucket",
    ],
)
def test_engine_panels_show_vllm_load_tokens_and_ttft(series: str) -> None:
    assert any(series + "{" in expr for expr in _exprs())


def test_every_vllm_series_queried_is_declared_by_the_installed_vllm() -> None:
    """Guards against a renamed vLLM metric (the panel would stay empty, silently)."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vllm not installed")
    metrics_dir = Path(next(iter(spec.submodule_search_locations))) / "v1" / "metrics"
    declared = set(re.findall(r'"(vllm:[a-z0-9_]+)"', _read_all(metrics_dir)))
    assert "vllm:num_requests_running" in declared, "vLLM's metrics moved: update this test"
    for name in {n for expr in _exprs() for n in VLLM_NAME.findall(expr)}:
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
        assert name in declared or base in declared, name


def _read_all(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.py")))


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = _dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, p["title"]
        cells |= area
