"""Deterministic SSE and error edge cases against the scripted upstream (real HTTP on loopback)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.servers import RunningGateway


def _client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=10)


def _sse_payloads(raw: bytes) -> list[bytes]:
    return [e[len(b"data: ") :] for e in raw.split(b"\n\n") if e.startswith(b"data: ")]


def _stream_raw(
    gw: RunningGateway, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> bytes:
    with httpx.stream("POST", gw.url + path, json=body, timeout=10) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "chunks",
    [
        ["Hel", "lo", " wor", "ld"],
        ["H", "é", "l", "🙂", "lo"],
        ["a" * 5000],
        ["line\n\n", "data: not an event", "\r\n"],
    ],
    ids=["small", "unicode", "large-chunk", "sse-lookalike-text"],
)
def test_stream_relays_every_chunk_in_order(
    fake_gateway: RunningGateway, chunks: list[str]
) -> None:
    stream = _client(fake_gateway).chat.completions.create(
        **CHAT, stream=True, extra_body={"fake": {"chunks": chunks}}
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces == chunks


def test_stream_ends_with_done_and_usage_when_asked(fake_gateway: RunningGateway) -> None:
    raw = _stream_raw(
        fake_gateway,
        {
            **CHAT,
            "stream": True,
            "stream_options": {"include_usage": True},
            "fake": {"text": "abcdefgh"},
        },
    )
    payloads = _sse_payloads(raw)
    assert payloads[-1] == b"[DONE]"
    usage = orjson.loads(payloads[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2


def test_stream_cut_midway_ends_with_error_event_then_done(fake_gateway: RunningGateway) -> None:
    raw = _stream_raw(
        fake_gateway, {**CHAT, "stream": True, "fake": {"mode": "cut", "text": "0123456789abcdef"}}
    )
    payloads = _sse_payloads(raw)
    assert payloads[-1] == b"[DONE]"
    error = orjson.loads(payloads[-2])["error"]
    assert error["type"] == "upstream_error" and "ended before" in error["message"]


def test_stream_without_done_is_reported_as_cut(fake_gateway: RunningGateway) -> None:
    raw = _stream_raw(fake_gateway, {**CHAT, "stream": True, "fake": {"mode": "no_done"}})
    payloads = _sse_payloads(raw)
    assert payloads[-1] == b"[DONE]" and b"error" in payloads[-2]


def test_malformed_sse_event_ends_stream_with_error(fake_gateway: RunningGateway) -> None:
    raw = _stream_raw(
        fake_gateway,
        {**CHAT, "stream": True, "fake": {"mode": "malformed_sse", "text": "0123456789abcdef"}},
    )
    payloads = _sse_payloads(raw)
    assert b"not json" not in raw
    assert orjson.loads(payloads[-2])["error"]["message"].startswith("upstream sent a malformed")


def test_slow_first_byte_past_timeout_is_a_504_envelope(fake_gateway: RunningGateway) -> None:
    started = time.monotonic()
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={**CHAT, "fake": {"first_byte_s": 5}},
        timeout=10,
    )
    assert time.monotonic() - started < 4.5
    assert response.status_code == 504
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_slow_first_byte_within_timeout_is_served(fake_gateway: RunningGateway) -> None:
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={**CHAT, "fake": {"first_byte_s": 0.5, "text": "late"}},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "late"


@pytest.mark.parametrize("shape", ["nested", "flat"])
@pytest.mark.parametrize("status", [400, 404])
def test_upstream_error_shapes_become_openai_envelope(
    fake_gateway: RunningGateway, shape: str, status: int
) -> None:
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={
            **CHAT,
            "fake": {
                "mode": "status",
                "status": status,
                "error_shape": shape,
                "message": "scripted failure",
            },
        },
        timeout=10,
    )
    assert response.status_code == status
    assert response.json() == {
        "error": {
            "message": "scripted failure",
            "type": "BadRequestError",
            "param": None,
            "code": status,
        }
    }


def test_upstream_5xx_becomes_502_envelope(fake_gateway: RunningGateway) -> None:
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={**CHAT, "fake": {"mode": "status", "status": 500}},
        timeout=10,
    )
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "scripted failure"


def test_malformed_upstream_json_is_a_502_envelope(fake_gateway: RunningGateway) -> None:
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={**CHAT, "fake": {"mode": "malformed_json"}},
        timeout=10,
    )
    assert response.status_code == 502
    assert "malformed" in response.json()["error"]["message"]


def test_refused_connection_is_a_502_envelope() -> None:
    from stack.processes import free_port
    from tests.servers import run_gateway

    with run_gateway(upstream=f"http://127.0.0.1:{free_port()}") as gw:
        response = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


def test_unknown_fields_reach_the_upstream(
    fake_gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        json={**CHAT, "top_k": 7, "min_p": 0.1, "repetition_penalty": 1.2},
        timeout=10,
    )
    sent = fake_upstream.recorder.requests[-1]
    assert (sent["top_k"], sent["min_p"], sent["repetition_penalty"]) == (7, 0.1, 1.2)


def test_n_choices_stay_apart_when_streamed(fake_gateway: RunningGateway) -> None:
    stream = _client(fake_gateway).chat.completions.create(
        **CHAT, n=3, stream=True, extra_body={"fake": {"text": "abcdefghij"}}
    )
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == {0: "abcdefghij", 1: "abcdefghij", 2: "abcdefghij"}
    assert finishes == {0: "stop", 1: "stop", 2: "stop"}


def test_client_disconnect_cancels_the_upstream_stream(
    fake_gateway: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    before = fake_upstream.recorder.cancelled
    body = {**CHAT, "stream": True, "fake": {"text": "x" * 400, "chunk_delay_s": 0.05}}
    with httpx.stream(
        "POST", fake_gateway.url + "/v1/chat/completions", json=body, timeout=10
    ) as r:
        for _ in r.iter_raw():
            break
    deadline = time.monotonic() + 5
    while fake_upstream.recorder.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_upstream.recorder.cancelled == before + 1


def test_models_hide_adapters(fake_gateway: RunningGateway) -> None:
    ids = [m.id for m in _client(fake_gateway).models.list()]
    assert ids == ["fake-model"]


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        (orjson.dumps({"model": "m"}), 400, "invalid_value"),
        (orjson.dumps({"model": "m", "messages": []}), 400, "invalid_value"),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "invalid_value",
        ),
        (
            orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            400,
            "invalid_value",
        ),
    ],
    ids=["malformed", "not-object", "no-messages", "empty-messages", "bad-role", "bad-n"],
)
def test_bad_requests_get_clear_400_envelopes(
    fake_gateway: RunningGateway, body: bytes, status: int, code: str
) -> None:
    response = httpx.post(
        fake_gateway.url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_health_and_readiness(fake_gateway: RunningGateway) -> None:
    assert httpx.get(fake_gateway.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(fake_gateway.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
