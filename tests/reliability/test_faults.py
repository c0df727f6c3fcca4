"""Upstream and filter faults while policies are active: clean OpenAI errors or a terminated
stream with an error event, never a hang, and never held-back text released unchecked."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from stack.processes import free_port
from tests.fakes.upstream import FakeUpstream, script
from tests.reliability.conftest import (
    CANARY_PHONE,
    CHAT_PATH,
    chat,
    fault_policy,
    pii_policy,
    sse_payloads,
    write_policies,
)
from tests.servers import RunningGateway, run_gateway

#: The phone arrives split so a guarded stream must hold "628-555-" back when the cut comes.
PHONE_CHUNKS = ["Hello there. ", "Call ", "628-", "555-", "01", "43 now.", " Bye", " then."]


@pytest.fixture(scope="module")
def guarded(fake_upstream: FakeUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    policies = write_policies(tmp_path_factory.mktemp("faults") / "p", {
        "person.yaml": pii_policy("person", CANARY_PHONE, stages="[output]", action="block"),
    })
    with run_gateway(upstream=fake_upstream.url, policies=policies,
                     first_byte_timeout_s=1.0, upstream_idle_timeout_s=1.0) as gw:
        yield gw


def _stream(gw: RunningGateway, fake: dict[str, object]) -> tuple[str, list[bytes]]:
    with httpx.stream("POST", gw.url + CHAT_PATH, json=chat("hi", stream=True, **script(**fake)),
                      timeout=10) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw())
    payloads = sse_payloads(raw)
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in (orjson.loads(p) for p in payloads if p.startswith(b"{"))
        if c.get("choices")
    )
    return text, payloads


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@pytest.mark.parametrize("fake, reason", [
    ({"mode": "cut"}, "ended before"),
    ({"mode": "malformed_sse"}, "malformed"),
    ({"chunk_delay_s": 1.5}, "stopped sending"),
], ids=["cut", "malformed-sse", "stalled"])
def test_broken_guarded_stream_never_releases_held_back_text(
    guarded: RunningGateway, fake: dict[str, object], reason: str
) -> None:
    started = time.monotonic()
    text, payloads = _stream(guarded, {"chunks": PHONE_CHUNKS, **fake})
    assert time.monotonic() - started < 8
    assert text.startswith("Hello there.")
    assert "628" not in _digits(text) and "555" not in _digits(text)
    assert payloads[-1] == b"[DONE]"
    error = orjson.loads(payloads[-2])["error"]
    assert reason in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_unguarded_control_releases_the_partial_phone(fake_gateway: RunningGateway) -> None:
    """Without a policy the same cut stream shows the digits: the guarded test can fail."""
    text, _ = _stream(fake_gateway, {"chunks": PHONE_CHUNKS, "mode": "cut"})
    assert "628555" in _digits(text)


def test_completed_guarded_stream_blocks_the_phone(guarded: RunningGateway) -> None:
    text, payloads = _stream(guarded, {"chunks": PHONE_CHUNKS})
    assert "0143" not in _digits(text)
    assert b'"finish_reason":"content_filter"' in b"".join(payloads)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("fake, status", [
    ({"mode": "status", "status": 500}, 502),
    ({"mode": "status", "status": 503}, 503),
    ({"mode": "hang"}, 504),
    ({"first_byte_s": 3}, 504),
], ids=["500", "503", "hang", "slow-first-byte"])
def test_upstream_failures_under_policies_are_envelopes(
    guarded: RunningGateway, fake: dict[str, object], status: int, stream: bool
) -> None:
    started = time.monotonic()
    response = httpx.post(guarded.url + CHAT_PATH, json=chat("hi", stream=stream, **script(**fake)),
                          timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_malformed_upstream_json_under_policies_is_a_502(guarded: RunningGateway) -> None:
    response = httpx.post(guarded.url + CHAT_PATH,
                          json=chat("hi", **script(mode="malformed_json")), timeout=10)
    assert response.status_code == 502 and "malformed" in response.json()["error"]["message"]


def test_refused_connection_under_policies_is_a_502(tmp_path: Path) -> None:
    policies = write_policies(tmp_path / "p", {"person.yaml": pii_policy("person", CANARY_PHONE)})
    with run_gateway(upstream=f"http://127.0.0.1:{free_port()}", policies=policies,
                     served_models=("fake-model",)) as gw:
        for stream in (False, True):
            response = httpx.post(gw.url + CHAT_PATH, json=chat("hi", stream=stream), timeout=10)
            assert response.status_code == 502
            assert response.json()["error"]["type"] == "upstream_error"


# -- filters that fail -------------------------------------------------------------------------

def _metric(gw: RunningGateway, name: str, **labels: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def failing(fake_upstream: FakeUpstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    policies = write_policies(tmp_path_factory.mktemp("failing") / "p", {
        "raises.yaml": fault_policy("raises", "raise"),
    })
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        yield gw


def test_raising_filter_fails_closed_at_input(
    failing: RunningGateway, fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="lethe")
    before_count = _metric(failing, "lethe_policy_decisions_total", policy="raises",
                           stage="input", action="block")
    before = len(fake_upstream.recorder.requests)
    response = httpx.post(failing.url + CHAT_PATH, json=chat("hi"), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"
    assert len(fake_upstream.recorder.requests) == before
    assert _metric(failing, "lethe_policy_decisions_total", policy="raises", stage="input",
                   action="block") == before_count + 1
    assert any("failing closed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_raising_filter_fails_closed_at_output(
    fake_upstream: FakeUpstream, tmp_path: Path, stream: bool
) -> None:
    policies = write_policies(tmp_path / "p", {
        "raises.yaml": fault_policy("raises", "raise", stages="[output]")})
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        response = httpx.post(gw.url + CHAT_PATH, json=chat(
            "hi", stream=stream, **script(text="Words that were never checked.")), timeout=10)
    assert response.status_code == 200
    assert "never checked" not in response.text
    assert "content_filter" in response.text


def test_filter_over_its_time_budget_fails_closed(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    policies = write_policies(tmp_path / "p", {
        "slow.yaml": fault_policy("slow", "slow", options="    sleep_s: 1.5\n")})
    with run_gateway(upstream=fake_upstream.url, policies=policies, filter_timeout_s=0.2) as gw:
        started = time.monotonic()
        response = httpx.post(gw.url + CHAT_PATH, json=chat("hi"), timeout=10)
        elapsed = time.monotonic() - started
    assert response.status_code == 400 and response.json()["error"]["code"] == "content_filter"
    assert elapsed < 1.2


def test_fail_open_policy_lets_through_counts_and_logs_critical(
    fake_upstream: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="lethe")
    policies = write_policies(tmp_path / "p", {
        "open.yaml": fault_policy("open", "raise", extra="fail_open: true\n")})
    with run_gateway(upstream=fake_upstream.url, policies=policies) as gw:
        response = httpx.post(gw.url + CHAT_PATH, json=chat("hi", **script(text="served")))
        assert response.json()["choices"][0]["message"]["content"] == "served"
        # One failure at input, one at output.
        assert _metric(gw, "lethe_fail_open_total", policy="open", filter="fault") == 2
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 2 and all("FAIL-OPEN" in r.getMessage() for r in critical)
