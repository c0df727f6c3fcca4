"""Class 12: nobody holds a connection forever.

Clients: a body trickled one byte at a time (slower than the idle timeout, or just under it so
only the whole-body deadline catches it), chunked framing trickled, headers and then nothing,
half a body and then nothing. Upstreams: a stream of SSE comments only (a keep-alive that is not
activity), content and then only comments, a stream that stops sending, a whole answer whose body
never comes, an answer that never starts. The gateway here has short timeouts; each connection
must be released (answered or closed) within the timeout plus a few seconds, and a stream ends
with an error event and [DONE] with the upstream stream closed.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from tests.attacks.redteam.client import PATHS, body_for, parse_sse
from tests.attacks.redteam.conftest import BODY_IDLE_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT, TIGHT
from tests.attacks.redteam.rawhttp import connect, released_within, request_bytes
from tests.attacks.redteam.upstream import Script, ScriptedUpstream
from tests.servers import RunningGateway

SLACK = 4.0


def _setting(gateway: RunningGateway, name: str) -> float:
    value = getattr(gateway.settings, name, None)
    assert value is not None, f"the gateway has no `{name}` setting"
    return float(value)


def _trickle(gateway: RunningGateway, head: bytes, body: bytes, interval: float,
             bound: float, prefix: int = 0) -> tuple[bool, float, bytes]:
    """Send `head` and `prefix` bytes, then one byte every `interval` until the gateway answers
    or closes; (released, seconds, answer)."""
    sock = connect(gateway.url)
    started = time.monotonic()
    try:
        sock.sendall(head + body[:prefix])
        for k in range(prefix, len(body) + 1):
            done, answer = released_within(sock, interval)
            if done:
                return True, time.monotonic() - started, answer
            if time.monotonic() - started > bound:
                return False, time.monotonic() - started, b""
            if k < len(body):
                try:
                    sock.sendall(body[k : k + 1])
                except OSError:
                    return True, time.monotonic() - started, b""
        done, answer = released_within(sock, bound)
        return done, time.monotonic() - started, answer
    finally:
        sock.close()


def _chunked_body(body: bytes) -> bytes:
    return b"".join(b"1\r\n" + body[k : k + 1] + b"\r\n" for k in range(len(body))) + b"0\r\n\r\n"


SLOW_CLIENTS = [
    pytest.param("chat", "content-length", 2.0, 0, id="byte-every-2s-chat"),
    pytest.param("completion", "content-length", 2.0, 0, id="byte-every-2s-completion"),
    pytest.param("chat", "content-length", 0.5, 0, id="byte-every-0.5s-under-idle-timeout"),
    pytest.param("chat", "chunked", 2.0, 0, id="chunked-byte-every-2s"),
    pytest.param("chat", "chunked", 0.5, 0, id="chunked-byte-every-0.5s-under-idle-timeout"),
    pytest.param("chat", "content-length", 60.0, 0, id="headers-then-nothing"),
    pytest.param("completion", "content-length", 60.0, 40, id="half-body-then-nothing"),
]


@pytest.mark.parametrize("kind, framing, interval, prefix", SLOW_CLIENTS)
def test_slow_client_body_is_cut_off(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, framing: str,
    interval: float, prefix: int,
) -> None:
    whole = _setting(tight_gateway, BODY_TIMEOUT)
    _setting(tight_gateway, BODY_IDLE_TIMEOUT)
    body = body_for(kind, "Tell me about the weather in Lisbon in April, please." * 2)
    head, payload = request_bytes(tight_gateway.url, PATHS[kind], body,
                                  chunked=framing == "chunked")
    if framing == "chunked":
        payload = _chunked_body(payload)
    mark = upstream.recorder.mark()
    released, seconds, answer = _trickle(tight_gateway, head, payload, interval,
                                         bound=whole + SLACK, prefix=prefix)
    assert released, f"connection still held after {seconds:.1f}s"
    assert seconds <= whole + SLACK, f"released only after {seconds:.1f}s"
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
    assert not upstream.recorder.since(mark), "a half-received request reached the upstream"


def _stream_until(gateway: RunningGateway, kind: str, bound: float) -> tuple[float, list[Any]]:
    """Read a stream with a wall-clock bound (per-read timeouts never fire on keep-alives)."""
    started = time.monotonic()
    raw = b""
    body = body_for(kind, "Hello", stream=True)
    with httpx.stream("POST", gateway.url + PATHS[kind], content=orjson.dumps(body),
                      headers={"content-type": "application/json"},
                      timeout=httpx.Timeout(bound)) as response:
        try:
            for piece in response.iter_raw():
                raw += piece
                if time.monotonic() - started > bound:
                    break
        except httpx.ReadTimeout:
            pass
    return time.monotonic() - started, parse_sse(raw.decode("utf-8", errors="replace"))


IDLE_UPSTREAMS = [
    pytest.param("chat", Script(mode="comments", comment_every_s=0.2), id="comments-only-chat"),
    pytest.param("completion", Script(mode="comments", comment_every_s=0.2),
                 id="comments-only-completion"),
    pytest.param("chat", Script(mode="comments", comment_every_s=0.1,
                                lead=("Her number ", "is ")), id="content-then-comments"),
    pytest.param("chat", Script(mode="hang"), id="stream-stops-sending"),
]


@pytest.mark.parametrize("kind, script", IDLE_UPSTREAMS)
def test_idle_upstream_stream_is_ended_in_bounded_time(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream, kind: str, script: Script,
) -> None:
    idle = _setting(tight_gateway, IDLE_TIMEOUT)
    with upstream.play(script):
        seconds, events = _stream_until(tight_gateway, kind, idle + SLACK)
    assert seconds <= idle + SLACK, f"stream still open after {seconds:.1f}s"
    assert events and events[-1] == "[DONE]", events[-3:]
    assert any(isinstance(e, dict) and "error" in e for e in events), events[-3:]
    deadline = time.monotonic() + 3
    while upstream.recorder.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.recorder.open_streams == 0, "the upstream stream was left open"


WHOLE_STALLS = [
    pytest.param(Script(mode="hang"), "read_timeout_s", id="whole-body-never-comes"),
    pytest.param(Script(first_byte_s=60), "first_byte_timeout_s", id="answer-never-starts"),
]


@pytest.mark.parametrize("script, setting", WHOLE_STALLS)
def test_stalled_whole_answer_is_a_timeout_error_in_bounded_time(
    tight_gateway: RunningGateway, upstream: ScriptedUpstream, script: Script, setting: str,
) -> None:
    limit = float(TIGHT[setting])
    started = time.monotonic()
    with upstream.play(script):
        response = httpx.post(tight_gateway.url + PATHS["chat"], json=body_for("chat", "Hi"),
                              timeout=limit + SLACK + 5)
    seconds = time.monotonic() - started
    assert seconds <= limit + SLACK, f"answered only after {seconds:.1f}s"
    assert response.status_code in (502, 503, 504), response.text
    assert set(response.json()["error"]) >= {"message", "type", "param", "code"}
