"""While output policies run, an answer carries the checked text and nothing else the upstream
chose: a scripted upstream puts a protected phone number in every other field of chat and
completion answers, streamed and whole, and no form of it reaches the client. Malformed data
and upstream errors end in a clean generic error (streams: an error event, then [DONE])."""

from __future__ import annotations

import copy
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream, script
from tests.servers import RunningGateway, run_gateway

PHONE = "415-555-0199"
PHONE_DIGITS = "4155550199"
EMAIL = "elena.marquez@example.org"
BENIGN = ["The weather ", "is mild ", "in spring."]
PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
GENERIC_STREAM_ERRORS = {"upstream error", "upstream sent a malformed event stream"}
CHOICE_KEYS = {
    ("chat", True): {"index", "delta", "logprobs", "finish_reason"},
    ("chat", False): {"index", "message", "logprobs", "finish_reason"},
    ("completion", True): {"index", "text", "logprobs", "finish_reason"},
    ("completion", False): {"index", "text", "logprobs", "finish_reason"},
}
OBJECTS = {("chat", True): "chat.completion.chunk", ("chat", False): "chat.completion",
           ("completion", True): "text_completion", ("completion", False): "text_completion"}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("allowlist-policies")
    (root / "person.yaml").write_text(
        "name: person\nkind: person\naction: redact\nstages: [output]\n"
        f"data:\n  pii:\n    phone: {PHONE}\n    email: {EMAIL}\n"
        "filters:\n  - type: pii\n"
    )
    return root


@pytest.fixture(scope="module")
def gateway(fake_upstream: FakeUpstream, policy_dir: Path) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, policies=policy_dir) as gw:
        yield gw


# -- what the scripted upstream sends ---------------------------------------------------------

def _chunk(kind: str, text: str | None, finish: str | None = None, role: bool = False,
           index: int = 0) -> dict[str, Any]:
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {"id": "up-1", "object": obj, "created": 1_700_000_000, "model": "fake-model",
            "choices": [choice]}


def _events(kind: str) -> list[Any]:
    """A benign stream: role, three pieces of text, the finish, usage, [DONE]. The channel
    under test is planted in events[2], the middle piece of text."""
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    return [
        _chunk(kind, "", role=True),
        *(_chunk(kind, piece) for piece in BENIGN),
        _chunk(kind, None if kind == "chat" else "", finish="stop"),
        {**_chunk(kind, None), "choices": [], "usage": usage},
        "[DONE]",
    ]


def _whole(kind: str) -> dict[str, Any]:
    text = "".join(BENIGN)
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                  "logprobs": None, "finish_reason": "stop"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        obj = "text_completion"
    return {"id": "up-1", "object": obj, "created": 1_700_000_000, "model": "fake-model",
            "choices": [choice],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}


def _choice(target: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = target["choices"][0]
    return choice


def _inner(target: dict[str, Any]) -> dict[str, Any]:
    choice = _choice(target)
    inner: dict[str, Any] = choice.get("delta", choice.get("message", {}))
    return inner


def _set_text(target: dict[str, Any], value: Any) -> None:
    choice = _choice(target)
    if "text" in choice:
        choice["text"] = value
    else:
        _inner(target)["content"] = value


Plant = Callable[[dict[str, Any]], None]

#: (name, how the phone is planted in a chunk or whole answer): the text stays benign.
SIDE_CHANNELS: list[tuple[str, Plant]] = [
    ("stop_reason", lambda t: _choice(t).update(stop_reason=PHONE)),
    ("stop_reason-int", lambda t: _choice(t).update(stop_reason=int(PHONE_DIGITS))),
    ("finish_reason", lambda t: _choice(t).update(finish_reason=PHONE)),
    ("finish_reason-obj", lambda t: _choice(t).update(finish_reason={"stop": PHONE})),
    ("id", lambda t: t.update(id=f"chatcmpl-{PHONE}")),
    ("model", lambda t: t.update(model=PHONE)),
    ("object", lambda t: t.update(object=PHONE)),
    ("created", lambda t: t.update(created=int(PHONE_DIGITS))),
    ("system_fingerprint", lambda t: t.update(system_fingerprint=f"fp_{PHONE}")),
    ("service_tier", lambda t: t.update(service_tier=EMAIL)),
    ("usage-int", lambda t: t.update(usage={"prompt_tokens": int(PHONE_DIGITS),
                                            "completion_tokens": 1,
                                            "total_tokens": int(PHONE_DIGITS) + 1})),
    ("usage-split", lambda t: t.update(usage={"prompt_tokens": 4155, "completion_tokens": 550199,
                                              "total_tokens": 554354})),
    ("usage-str", lambda t: t.update(usage={"prompt_tokens": PHONE, "completion_tokens": 1,
                                            "total_tokens": 2})),
    ("usage-details", lambda t: t.update(usage={
        "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
        "prompt_tokens_details": {"cached": PHONE}})),
    ("logprobs", lambda t: _choice(t).update(logprobs={"content": [
        {"token": PHONE, "logprob": -0.1, "top_logprobs": [{"token": EMAIL, "logprob": -1}]}]})),
    ("token_ids", lambda t: _choice(t).update(token_ids=[ord(c) for c in PHONE])),
    ("prompt_logprobs", lambda t: t.update(prompt_logprobs=[{"1": {"decoded_token": PHONE}}])),
    ("unknown-top", lambda t: t.update(x_note=PHONE)),
    ("unknown-choice", lambda t: _choice(t).update(x_note=PHONE)),
    ("unknown-inner", lambda t: _inner(t).update(x_note=PHONE, reasoning_content=PHONE,
                                                 tool_calls=[{"function": {"arguments": PHONE}}])),
    ("chat-choice-text", lambda t: _choice(t).update(text=f"Call {PHONE}")),
    ("completion-choice-message", lambda t: _choice(t).update(
        message={"role": "assistant", "content": f"Call {PHONE}"},
        delta={"content": f"Call {PHONE}"})),
]
#: Channels that are the checked text itself for the other endpoint.
ONLY = {"chat-choice-text": "chat", "completion-choice-message": "completion",
        "message-list": "chat"}

#: The phone as data that breaks the answer's shape: the stream ends with an error event.
MALFORMED: list[tuple[str, Plant]] = [
    ("content-list", lambda t: _set_text(t, [{"type": "text", "text": PHONE}])),
    ("content-dict", lambda t: _set_text(t, {"text": PHONE})),
    ("content-number", lambda t: _set_text(t, int(PHONE_DIGITS))),
    ("index-str", lambda t: _choice(t).update(index=PHONE)),
    ("index-huge", lambda t: _choice(t).update(index=int(PHONE_DIGITS))),
    ("index-negative", lambda t: _choice(t).update(index=-1)),
    ("index-bool", lambda t: _choice(t).update(index=False)),
    ("choices-dict", lambda t: t.update(choices={"0": PHONE})),
    ("choice-str", lambda t: t.update(choices=[PHONE])),
    ("message-list", lambda t: _choice(t).update(
        {("delta" if "delta" in _choice(t) else "message"): [PHONE]})),
    ("error-key", lambda t: t.update(error={"message": f"engine failed on {PHONE}",
                                            "type": "InternalServerError", "code": 500})),
    ("error-flat", lambda t: t.update(object="error", message=PHONE)),
]


def _leaks(raw: bytes) -> list[str]:
    text = unicodedata.normalize("NFKC", raw.decode("utf-8", "replace"))
    found = []
    if PHONE_DIGITS in re.sub(r"\D", "", text):
        found.append("phone digits")
    if "marquez" in text.lower():
        found.append("email")
    return found


def _payloads(raw: bytes) -> list[bytes]:
    return [e[len(b"data: "):] for e in raw.split(b"\n\n") if e.startswith(b"data: ")]


def _body(kind: str, stream: bool, **extra: Any) -> dict[str, Any]:
    if kind == "chat":
        body: dict[str, Any] = {"model": "fake-model",
                                "messages": [{"role": "user", "content": "weather?"}]}
    else:
        body = {"model": "fake-model", "prompt": "weather?"}
    return {**body, "stream": stream, **extra}


def _send_stream(gw: RunningGateway, kind: str, events: list[Any], **extra: Any) -> bytes:
    body = _body(kind, True, max_tokens=64, **extra, **script(raw_events=events))
    with httpx.stream("POST", gw.url + PATHS[kind], json=body, timeout=10) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def _send_whole(gw: RunningGateway, kind: str, answer: Any) -> httpx.Response:
    body = _body(kind, False, max_tokens=64, **script(raw_whole=answer))
    return httpx.post(gw.url + PATHS[kind], json=body, timeout=10)


def _streamed(kind: str, plant: Plant, at: int = 2) -> list[Any]:
    events = _events(kind)
    plant(events[at])
    return events


def _whole_planted(kind: str, plant: Plant) -> dict[str, Any]:
    answer = _whole(kind)
    plant(answer)
    return answer


def _chunks_of(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(p) for p in _payloads(raw) if p.startswith(b"{")]


def _assert_allow_listed(kind: str, stream: bool, answer: dict[str, Any]) -> None:
    assert set(answer) <= {"id", "object", "created", "model", "choices", "usage"}
    assert answer["id"].startswith("chatcmpl-" if kind == "chat" else "cmpl-")
    assert answer["object"] == OBJECTS[kind, stream]
    assert answer["model"] == "fake-model"
    assert type(answer["created"]) is int and answer["created"] != int(PHONE_DIGITS)
    for choice in answer["choices"]:
        assert set(choice) == CHOICE_KEYS[kind, stream]
        assert choice["logprobs"] is None
        assert choice["finish_reason"] in (None, "stop", "length", "content_filter")
        inner = choice.get("delta", choice.get("message"))
        if inner is not None:
            assert set(inner) <= {"role", "content"}
            assert inner.get("role", "assistant") == "assistant"
    if "usage" in answer:
        assert set(answer["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def _stream_text(kind: str, chunks: list[dict[str, Any]]) -> tuple[str, list[str]]:
    text, finishes = "", []
    for chunk in chunks:
        for choice in chunk.get("choices", ()):
            piece = choice["delta"].get("content") if kind == "chat" else choice["text"]
            text += piece or ""
            if choice["finish_reason"] is not None:
                finishes.append(choice["finish_reason"])
    return text, finishes


def _whole_text(kind: str, answer: dict[str, Any]) -> str:
    choice = answer["choices"][0]
    text: str = choice["message"]["content"] if kind == "chat" else choice["text"]
    return text


KINDS = pytest.mark.parametrize("kind", ["chat", "completion"])


def _cases(table: list[tuple[str, Plant]]) -> list[Any]:
    return [pytest.param(kind, name, plant, id=f"{kind}-{name}")
            for kind in ("chat", "completion") for name, plant in table
            if ONLY.get(name, kind) == kind]


# -- side channels: dropped or replaced, the benign text still flows --------------------------

@pytest.mark.parametrize("kind, name, plant", _cases(SIDE_CHANNELS))
def test_streamed_side_channel_never_carries_the_phone(
    gateway: RunningGateway, kind: str, name: str, plant: Plant
) -> None:
    # A finish ends its choice: planted on the last chunk so that all the text comes first.
    at = 4 if name.startswith("finish_reason") else 2
    raw = _send_stream(gateway, kind, _streamed(kind, plant, at))
    assert _leaks(raw) == []
    payloads = _payloads(raw)
    assert payloads[-1] == b"[DONE]"
    chunks = _chunks_of(raw)
    assert not any("error" in c for c in chunks)
    text, finishes = _stream_text(kind, chunks)
    assert text == "".join(BENIGN) and finishes == ["stop"]
    assert len({c["id"] for c in chunks}) == 1, "one id for the whole stream"
    for chunk in chunks:
        _assert_allow_listed(kind, True, chunk)


@pytest.mark.parametrize("kind, name, plant", _cases(SIDE_CHANNELS))
def test_whole_side_channel_never_carries_the_phone(
    gateway: RunningGateway, kind: str, name: str, plant: Plant
) -> None:
    response = _send_whole(gateway, kind, _whole_planted(kind, plant))
    assert _leaks(response.content) == []
    assert response.status_code == 200
    answer = response.json()
    _assert_allow_listed(kind, False, answer)
    assert _whole_text(kind, answer) == "".join(BENIGN)
    assert answer["choices"][0]["finish_reason"] == "stop"


@KINDS
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_valid_fields_pass_unchanged(gateway: RunningGateway, kind: str, stream: bool) -> None:
    """The control: a plausible finish_reason and usage are kept as the upstream sent them."""
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    if stream:
        events = _events(kind)
        _choice(events[4])["finish_reason"] = "length"
        events[5]["usage"] = usage
        chunks = _chunks_of(_send_stream(gateway, kind, events))
        text, finishes = _stream_text(kind, chunks)
        assert text == "".join(BENIGN) and finishes == ["length"]
        assert chunks[-1]["usage"] == usage
        if kind == "chat":
            assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    else:
        answer = {**_whole(kind), "usage": usage}
        _choice(answer)["finish_reason"] = "length"
        got = _send_whole(gateway, kind, answer).json()
        assert _whole_text(kind, got) == "".join(BENIGN)
        assert got["choices"][0]["finish_reason"] == "length" and got["usage"] == usage


@pytest.mark.parametrize("finish", ["abort", "tool_calls", "", 7, ["stop"]])
def test_unknown_finish_reasons_become_stop(gateway: RunningGateway, finish: Any) -> None:
    answer = _whole("chat")
    _choice(answer)["finish_reason"] = finish
    assert _send_whole(gateway, "chat", answer).json()["choices"][0]["finish_reason"] == "stop"


def test_completion_usage_above_the_requests_max_tokens_is_dropped(
    gateway: RunningGateway,
) -> None:
    answer = {**_whole("completion"),
              "usage": {"prompt_tokens": 3, "completion_tokens": 65, "total_tokens": 68}}
    assert "usage" not in _send_whole(gateway, "completion", answer).json()


def test_the_phone_in_the_text_itself_is_still_redacted(gateway: RunningGateway) -> None:
    """The checked text still goes through the policies (the table's text is benign)."""
    events = _events("chat")
    _set_text(events[2], f"call {PHONE} ")
    raw = _send_stream(gateway, "chat", events)
    assert _leaks(raw) == [] and b"[REDACTED]" in raw


# -- malformed data and error chunks: a generic error, then [DONE] ----------------------------

def _assert_generic_stream_error(raw: bytes) -> dict[str, Any]:
    payloads = _payloads(raw)
    assert payloads[-1] == b"[DONE]"
    error = orjson.loads(payloads[-2])
    assert set(error) == {"error"}
    assert error["error"]["message"] in GENERIC_STREAM_ERRORS
    assert {k: v for k, v in error["error"].items() if k != "message"} == {
        "type": "upstream_error", "param": None, "code": 502}
    return error


@pytest.mark.parametrize("kind, name, plant", _cases(MALFORMED))
def test_malformed_chunk_ends_the_stream_with_an_error_event_and_done(
    gateway: RunningGateway, kind: str, name: str, plant: Plant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = _send_stream(gateway, kind, _streamed(kind, plant))
    assert _leaks(raw) == []
    _assert_generic_stream_error(raw)
    text, _ = _stream_text(kind, [c for c in _chunks_of(raw) if "error" not in c])
    assert text == BENIGN[0], "what came before the bad chunk was sent, nothing after"
    assert _leaks("\n".join(r.getMessage() for r in caplog.records).encode()) == []
    assert any("request=" in r.getMessage() for r in caplog.records if r.name == "lethe")


@pytest.mark.parametrize("kind, name, plant", _cases(MALFORMED))
def test_malformed_whole_answer_is_a_generic_502(
    gateway: RunningGateway, kind: str, name: str, plant: Plant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = _send_whole(gateway, kind, _whole_planted(kind, plant))
    assert _leaks(response.content) == []
    assert response.status_code == 502
    assert response.json()["error"]["message"] in {
        "upstream error", "upstream sent a malformed response"}
    assert _leaks("\n".join(r.getMessage() for r in caplog.records).encode()) == []


#: Whole events that are not a chunk at all (sent as written, after the first piece of text).
BAD_EVENTS = [
    ("json-string", f'"{PHONE}"'),
    ("json-list", orjson.dumps([PHONE]).decode()),
    ("json-number", PHONE_DIGITS),
    ("not-json", f"call {PHONE}"),
    ("truncated-json", '{"choices": [{"index": 0, "delta": {"content": "' + PHONE),
    ("lone-surrogate", '{"choices": [{"index": 0, "delta": {"content": "\\ud800' + PHONE
     + '"}}]}'),
]


@KINDS
@pytest.mark.parametrize("name, event", BAD_EVENTS, ids=[e[0] for e in BAD_EVENTS])
def test_event_that_is_not_a_chunk_ends_the_stream_cleanly(
    gateway: RunningGateway, kind: str, name: str, event: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events = _events(kind)
    events[2] = event
    raw = _send_stream(gateway, kind, events)
    assert _leaks(raw) == []
    _assert_generic_stream_error(raw)
    assert _leaks("\n".join(r.getMessage() for r in caplog.records).encode()) == []


@pytest.mark.parametrize("bad", [
    {"error": {"message": "failed", "type": "x", "code": 500}},
    {"choices": [{"index": 0, "delta": {"content": ["x"]}}]},
], ids=["error-chunk", "content-list"])
def test_held_back_text_is_never_released_after_a_bad_chunk(
    gateway: RunningGateway, bad: dict[str, Any]
) -> None:
    """"415-555-" could be the start of the phone: it is held back, then the stream breaks."""
    events = [_chunk("chat", "", role=True), _chunk("chat", "Call 415-555-"), bad, "[DONE]"]
    raw = _send_stream(gateway, "chat", events)
    text, _ = _stream_text("chat", [c for c in _chunks_of(raw) if "error" not in c])
    assert "555" not in text and text.startswith("Call")
    _assert_generic_stream_error(raw)


# -- upstream error responses: bounded status, generic message --------------------------------

@KINDS
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("status, expected", [(400, 400), (404, 404), (418, 400), (500, 502),
                                              (503, 503)])
@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_upstream_error_message_is_replaced_by_a_generic_one(
    gateway: RunningGateway, kind: str, stream: bool, status: int, expected: int, shape: str
) -> None:
    message = f"This model's context cannot fit 'call {PHONE}' ({EMAIL})"
    body = _body(kind, stream, **script(mode="status", status=status, message=message,
                                        error_shape=shape))
    response = httpx.post(gateway.url + PATHS[kind], json=body, timeout=10)
    assert _leaks(response.content) == []
    assert response.status_code == expected
    error = response.json()["error"]
    assert error["message"] in {"upstream rejected the request", "upstream error"}
    assert error["code"] == expected and error["param"] is None


# -- controls: the same upstream data through a gateway without policies ----------------------

@pytest.mark.parametrize("name", ["stop_reason", "system_fingerprint", "content-list"])
def test_without_policies_the_planted_phone_passes_through(
    fake_gateway: RunningGateway, name: str
) -> None:
    """Pass-through forwards the upstream's bytes as they are: the table's cases can fail."""
    plant = dict(SIDE_CHANNELS + MALFORMED)[name]
    events = _streamed("chat", plant)
    raw = _send_stream(fake_gateway, "chat", events)
    assert _leaks(raw) == ["phone digits"]
    assert _payloads(raw)[:len(events)] == [
        e.encode() if isinstance(e, str) else orjson.dumps(e) for e in events]


def test_without_policies_a_whole_answer_is_forwarded_byte_for_byte(
    fake_gateway: RunningGateway,
) -> None:
    answer = _whole_planted("completion", dict(SIDE_CHANNELS)["stop_reason"])
    response = _send_whole(fake_gateway, "completion", copy.deepcopy(answer))
    assert response.content == orjson.dumps(answer)


# -- bytes no JSON script can carry: invalid UTF-8 -------------------------------------------

class _RawUpstream(BaseHTTPRequestHandler):
    """Answers every completion with the server's fixed bytes (as an SSE stream)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        payload: bytes = self.server.payload  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def raw_upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RawUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_invalid_utf8_in_a_chunk_ends_the_stream_cleanly(
    raw_upstream: ThreadingHTTPServer, policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = b"data: " + orjson.dumps(_chunk("chat", BENIGN[0])) + b"\n\n"
    bad = b'data: {"choices": [{"index": 0, "delta": {"content": "\xff\xfe' + PHONE.encode()
    raw_upstream.payload = good + bad + b'"}}]}\n\ndata: [DONE]\n\n'  # type: ignore[attr-defined]
    port = raw_upstream.server_address[1]
    with run_gateway(upstream=f"http://127.0.0.1:{port}", policies=policy_dir,
                     served_models=("fake-model",)) as gw:
        raw = _send_stream(gw, "chat", [])
    assert _leaks(raw) == []
    _assert_generic_stream_error(raw)
    assert _stream_text("chat", [c for c in _chunks_of(raw) if "error" not in c])[0] == BENIGN[0]
    assert _leaks("\n".join(r.getMessage() for r in caplog.records).encode()) == []
