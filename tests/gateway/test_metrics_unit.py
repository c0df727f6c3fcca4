"""The metric catalogue: names, types, labels, buckets and the exposition format."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import (
    LATENCY_BUCKETS,
    OTHER_MODEL,
    UPSTREAM_ERROR_REASONS,
    Metrics,
    bounded_model,
)

# family name as exposed (counters lose their _total suffix in the parsed family name)
CATALOGUE = [
    ("requests", "lethe_requests", "counter", {"route", "model", "status"}),
    ("request_duration", "lethe_request_duration_seconds", "histogram", {"route"}),
    ("ttft", "lethe_time_to_first_token_seconds", "histogram", {"route"}),
    ("in_flight", "lethe_in_flight_requests", "gauge", set()),
    ("upstream_errors", "lethe_upstream_errors", "counter", {"reason"}),
    ("decisions", "lethe_policy_decisions", "counter", {"policy", "stage", "filter", "action"}),
    ("filter_duration", "lethe_filter_duration_seconds", "histogram", {"filter", "stage"}),
    ("holdback_chars", "lethe_stream_holdback_characters", "histogram", set()),
    ("holdback_delay", "lethe_stream_holdback_delay_seconds", "histogram", set()),
    ("fail_open", "lethe_fail_open", "counter", {"policy", "filter"}),
    ("holdback_cap_blocks", "lethe_stream_holdback_cap_blocks", "counter", {"cap"}),
    ("filter_overruns", "lethe_filter_budget_overruns", "counter", {"budget"}),
    ("reloads", "lethe_config_reloads", "counter", {"result"}),
    ("adapter_loads", "lethe_adapter_loads", "counter", {"result"}),
]

FORBIDDEN_LABELS = {"user", "key", "api_key", "prompt", "text", "content", "ip"}


def _exercise(m: Metrics) -> None:
    m.requests.labels(route="/v1/chat/completions", model="smollm2", status="200").inc()
    m.request_duration.labels(route="/v1/chat/completions").observe(0.42)
    m.ttft.labels(route="/v1/chat/completions").observe(0.05)
    m.in_flight.inc()
    m.upstream_error("timeout")
    m.decisions.labels(policy="p1", stage="output", filter="ngram", action="block").inc()
    m.filter_duration.labels(filter="ngram", stage="output").observe(0.0003)
    m.holdback_chars.observe(96)
    m.holdback_delay.observe(0.02)
    m.fail_open.labels(policy="p1", filter="embedding").inc()
    m.reload(ok=True)
    m.adapter_load(ok=False)
    m.set_policy_set("9f2c", 4)


def _families(m: Metrics) -> dict[str, object]:
    body, _ = m.render()
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    _exercise(m)
    return m


@pytest.mark.parametrize(("attr", "name", "kind", "labels"), CATALOGUE)
def test_each_metric_is_exposed_with_its_name_type_and_labels(
    metrics: Metrics, attr: str, name: str, kind: str, labels: set[str]
) -> None:
    assert hasattr(metrics, attr)
    family = _families(metrics)[name]
    assert family.type == kind  # type: ignore[attr-defined]
    samples = family.samples  # type: ignore[attr-defined]
    assert samples, f"{name} exposed no samples"
    for sample in samples:
        assert set(sample.labels) - {"le"} == labels
        assert not FORBIDDEN_LABELS & set(sample.labels)


def test_counters_carry_total_suffix_and_units_are_base_units(metrics: Metrics) -> None:
    text = metrics.render()[0].decode()
    for counter in ("requests", "upstream_errors", "policy_decisions", "fail_open"):
        assert f"lethe_{counter}_total" in text
    for histogram in ("request_duration", "time_to_first_token", "filter_duration"):
        assert f"lethe_{histogram}_seconds_bucket" in text
    assert "_milliseconds" not in text


def test_observed_values_are_counted(metrics: Metrics) -> None:
    fams = _families(metrics)
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for s in fams["lethe_requests"].samples  # type: ignore[attr-defined]
        if s.name == "lethe_requests_total"
    }
    key = (("model", "smollm2"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert requests == {key: 1.0}
    ttft_count = [
        s.value
        for s in fams["lethe_time_to_first_token_seconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_count")
    ]
    assert ttft_count == [1.0]


def test_fixed_label_sets_are_exposed_at_zero_before_any_event() -> None:
    fams = _families(Metrics())
    reasons = {
        s.labels["reason"]: s.value
        for s in fams["lethe_upstream_errors"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_total")
    }
    assert reasons == dict.fromkeys(UPSTREAM_ERROR_REASONS, 0.0)
    for family in ("lethe_config_reloads", "lethe_adapter_loads"):
        results = {
            s.labels["result"]
            for s in fams[family].samples  # type: ignore[attr-defined]
            if s.name.endswith("_total")
        }
        assert results == {"success", "failure"}


def test_unknown_upstream_error_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown upstream error reason"):
        Metrics().upstream_error("connection refused by 10.0.0.7")


def test_policy_set_info_carries_hash_and_count(metrics: Metrics) -> None:
    family = _families(metrics)["lethe_policy_set_info"]
    (sample,) = family.samples  # type: ignore[attr-defined]
    assert sample.name == "lethe_policy_set_info"
    assert sample.labels == {"hash": "9f2c", "count": "4"}
    metrics.set_policy_set("aa11", 5)
    (sample,) = _families(metrics)["lethe_policy_set_info"].samples  # type: ignore[attr-defined]
    assert sample.labels == {"hash": "aa11", "count": "5"}


def test_latency_buckets_span_a_millisecond_to_two_minutes(metrics: Metrics) -> None:
    assert LATENCY_BUCKETS[0] == pytest.approx(0.001)
    assert LATENCY_BUCKETS[-1] == pytest.approx(120.0)
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
    text = metrics.render()[0].decode()
    assert 'lethe_filter_duration_seconds_bucket{filter="ngram",le="0.0001"' in text
    assert 'lethe_filter_duration_seconds_bucket{filter="ngram",le="5.0"' in text


def test_several_apps_get_independent_registries() -> None:
    first, second = Metrics(), Metrics()
    first.in_flight.inc(3)
    in_flight = _families(second)["lethe_in_flight_requests"].samples  # type: ignore[attr-defined]
    assert [s.value for s in in_flight] == [0.0]


def test_metrics_register_on_a_given_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry).in_flight.inc()
    assert registry.get_sample_value("lethe_in_flight_requests") == 1.0
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(registry)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("smollm2", "smollm2"), ("forget-hp", "forget-hp"), ("gpt-4o", OTHER_MODEL), (None, "other")],
)
def test_unknown_model_names_collapse_to_other(requested: str | None, expected: str) -> None:
    assert bounded_model(requested, {"smollm2", "forget-hp"}) == expected


def test_render_returns_prometheus_text_by_default(metrics: Metrics) -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert isinstance(body, bytes)


def test_render_speaks_openmetrics_when_the_scraper_asks(metrics: Metrics) -> None:
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    names = {f.name for f in parse_openmetrics(body.decode())}
    assert {"lethe_requests", "lethe_policy_set", "lethe_stream_holdback_delay_seconds"} <= names
