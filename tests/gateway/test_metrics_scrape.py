"""/metrics after real requests through a gateway with policies (scripted upstream)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway

PHONE = "415-555-0199"


@pytest.fixture(scope="module")
def gateway(
    fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    root: Path = tmp_path_factory.mktemp("metrics-policies")
    (root / "person.yaml").write_text(
        "name: person\naction: redact\ndata:\n  pii:\n    phone: 415-555-0199\n"
        "filters:\n  - type: pii\n"
    )
    with run_gateway(
        upstream=fake_upstream.url, policies=root, served_models=("fake-model",)
    ) as gw:
        yield gw


def _samples(gw: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(gw.url + "/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _chat(gw: RunningGateway, text: str, stream: bool = False, **extra: object) -> httpx.Response:
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        **script(text=text),
        **extra,
    }
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=10)


def test_metrics_count_requests_decisions_and_errors(gateway: RunningGateway) -> None:
    for _ in range(3):
        assert _chat(gateway, "plain answer").status_code == 200
    assert (
        _chat(gateway, f"call {PHONE}").json()["choices"][0]["message"]["content"]
        == "call [REDACTED]"
    )
    assert _chat(gateway, f"call {PHONE} now", stream=True).status_code == 200
    assert _chat(gateway, "x", model="nope").status_code == 404
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        **script(mode="status", status=500),
    }
    assert (
        httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=10).status_code == 502
    )

    samples = _samples(gateway)
    route = "/v1/chat/completions"
    requests_ok = samples[
        ("lethe_requests_total", (("model", "fake-model"), ("route", route), ("status", "200")))
    ]
    assert requests_ok == 5
    assert (
        samples[
            ("lethe_requests_total", (("model", "fake-model"), ("route", route), ("status", "502")))
        ]
        == 1
    )
    assert samples[("lethe_upstream_errors_total", (("reason", "status_5xx"),))] == 1
    decisions = samples[
        (
            "lethe_policy_decisions_total",
            (("action", "redact"), ("filter", "pii"), ("policy", "person"), ("stage", "output")),
        )
    ]
    assert decisions == 2
    assert samples[("lethe_request_duration_seconds_count", (("route", route),))] == 6
    assert samples[("lethe_time_to_first_token_seconds_count", (("route", route),))] == 1
    assert (
        samples[("lethe_filter_duration_seconds_count", (("filter", "pii"), ("stage", "output")))]
        >= 2
    )
    assert samples[("lethe_stream_holdback_characters_count", ())] >= 1
    assert samples[("lethe_in_flight_requests", ())] == 0
    assert any(name == "lethe_policy_set_info" for name, _ in samples)
    labels = {k for _, lbl in samples for k, _ in lbl}
    assert not labels & {"user", "prompt", "key", "api_key", "tenant_key"}
