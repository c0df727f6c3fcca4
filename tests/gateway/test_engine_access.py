"""A private engine: the gateway sends the engine's API key on every call; /metrics can move
to a port of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stack.processes import free_port
from tests.fakes.upstream import FakeUpstream, script
from tests.servers import run_gateway

ENGINE_KEY = "engine-key-for-tests"


@pytest.fixture
def locked_engine() -> Iterator[FakeUpstream]:
    """A fake vLLM started with --api-key: /v1 answers 401 without the key."""
    with FakeUpstream() as fake:
        fake.recorder.api_key = ENGINE_KEY
        yield fake


def _chat(url: str) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    body.update(script(text="hello"))
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=10)


def test_the_locked_engine_refuses_callers_without_its_key(locked_engine: FakeUpstream) -> None:
    assert _chat(locked_engine.url).status_code == 401


@pytest.mark.parametrize("how", ["file", "setting"])
def test_gateway_sends_the_engine_key_on_completions_models_and_adapter_calls(
    locked_engine: FakeUpstream, tmp_path: Path, how: str
) -> None:
    key_setting: dict[str, object] = {"upstream_api_key": ENGINE_KEY}
    if how == "file":
        key_file = tmp_path / "api-key"
        key_file.write_text(ENGINE_KEY + "\n")
        key_setting = {"upstream_api_key_file": key_file}
    with run_gateway(upstream=locked_engine.url, **key_setting) as gw:
        assert _chat(gw.url).status_code == 200
        assert httpx.get(gw.url + "/v1/models", timeout=10).status_code == 200
        assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 200
    seen = set(locked_engine.recorder.authorizations)
    assert seen == {f"Bearer {ENGINE_KEY}"}


def test_without_the_key_the_engine_refuses_the_gateway(locked_engine: FakeUpstream) -> None:
    with run_gateway(upstream=locked_engine.url) as gw:
        assert _chat(gw.url).status_code == 401


def test_an_empty_engine_key_file_refuses_to_start(
    locked_engine: FakeUpstream, tmp_path: Path
) -> None:
    empty = tmp_path / "api-key"
    empty.write_text("\n")
    with pytest.raises(RuntimeError, match="gateway failed to start"), run_gateway(
        upstream=locked_engine.url, upstream_api_key_file=empty
    ):
        pass


def test_metrics_port_serves_metrics_and_the_serving_port_does_not(
    fake_upstream: FakeUpstream,
) -> None:
    port = free_port()
    with run_gateway(upstream=fake_upstream.url, metrics_port=port) as gw:
        assert _chat(gw.url).status_code == 200
        assert httpx.get(gw.url + "/metrics", timeout=10).status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scraped.status_code == 200
        served = 'model="fake-model",route="/v1/chat/completions",status="200"'
        assert "lethe_requests_total{" + served + "}" in scraped.text
        assert "lethe_in_flight_requests 0.0" in scraped.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_without_a_metrics_port_metrics_stay_on_the_serving_port(fake_gateway: object) -> None:
    url = fake_gateway.url  # type: ignore[attr-defined]
    assert "lethe_in_flight_requests" in httpx.get(url + "/metrics", timeout=10).text
