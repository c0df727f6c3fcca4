"""Request limits: body size counted on the bytes read, JSON depth, message count, bad input.

Each answer is an OpenAI error envelope with a stable code; nothing reaches the upstream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.reliability.conftest import CHAT_PATH, COMPLETION_PATH, chat
from tests.servers import RunningGateway, run_gateway

BODY_LIMIT = 4096
DEPTH_LIMIT = 8
MESSAGE_LIMIT = 8


@pytest.fixture(scope="module")
def limited(fake_upstream: FakeUpstream) -> Iterator[RunningGateway]:
    with run_gateway(upstream=fake_upstream.url, max_body_bytes=BODY_LIMIT,
                     max_json_depth=DEPTH_LIMIT, max_messages=MESSAGE_LIMIT) as gw:
        yield gw


def _post(gw: RunningGateway, content: Any, path: str = CHAT_PATH,
          headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gw.url + path, content=content, timeout=10,
                      headers={"content-type": "application/json", **(headers or {})})


def _envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


def _chunked(body: bytes, piece: int = 512) -> Iterator[bytes]:
    for i in range(0, len(body), piece):
        yield body[i : i + piece]


def test_chunked_body_without_length_is_counted_on_bytes_read(
    limited: RunningGateway, fake_upstream: FakeUpstream
) -> None:
    seen = len(fake_upstream.recorder.requests)
    body = orjson.dumps(chat("x" * (BODY_LIMIT * 4)))
    response = _post(limited, _chunked(body))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    _envelope(response, 413, "body_too_large")
    assert len(fake_upstream.recorder.requests) == seen


def test_chunked_body_under_the_limit_is_served(limited: RunningGateway) -> None:
    body = orjson.dumps(chat("y" * (BODY_LIMIT // 2)))
    assert _post(limited, _chunked(body)).status_code == 200


def test_declared_length_over_the_limit_is_refused_before_reading(limited: RunningGateway) -> None:
    _envelope(_post(limited, orjson.dumps(chat("z" * BODY_LIMIT))), 413, "body_too_large")


def _nested(depth: int) -> Any:
    node: Any = "leaf"
    for _ in range(depth):
        node = {"k": node}
    return node


@pytest.mark.parametrize("depth, status", [(DEPTH_LIMIT, 200), (DEPTH_LIMIT + 1, 400)])
def test_json_depth_limit(limited: RunningGateway, depth: int, status: int) -> None:
    # The body itself is level 1; the extra field adds the rest.
    body = chat("hi", metadata=_nested(depth - 1))
    response = _post(limited, orjson.dumps(body))
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        _envelope(response, 400, "too_deep")


def test_deep_array_nesting_is_refused_without_recursion_error(limited: RunningGateway) -> None:
    body = b'{"model": "fake-model", "messages": [], "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    response = _post(limited, body, headers={})
    assert response.status_code in (400, 413)
    assert response.json()["error"]["code"] in ("too_deep", "invalid_json", "body_too_large")


@pytest.mark.parametrize("count, status", [(MESSAGE_LIMIT, 200), (MESSAGE_LIMIT + 1, 400)])
def test_message_count_limit(limited: RunningGateway, count: int, status: int) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "m"}] * count}
    response = _post(limited, orjson.dumps(body))
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        _envelope(response, 400, "too_many_messages")
        assert response.json()["error"]["param"] == "messages"


@pytest.mark.parametrize(
    "path, body, code, param",
    [
        (CHAT_PATH, b"\xff\xfe{}", "invalid_json", None),
        (CHAT_PATH, b"", "invalid_json", None),
        (CHAT_PATH, b'{"model": "m", "messages": [{"role": "user", "content": "a"}]',
         "invalid_json", None),
        (CHAT_PATH, b'"just a string"', "invalid_json", None),
        (CHAT_PATH, orjson.dumps(chat("a", temperature=5)), "invalid_value", "temperature"),
        (CHAT_PATH, orjson.dumps(chat("a", max_tokens=-1)), "invalid_value", "max_tokens"),
        (CHAT_PATH, orjson.dumps(chat("a", logit_bias={"50256": "lots"})), "invalid_value",
         "logit_bias.50256"),
        (CHAT_PATH, orjson.dumps({"model": "", "messages": [{"role": "user", "content": "a"}]}),
         "invalid_value", "model"),
        (CHAT_PATH, orjson.dumps({"model": "m", "messages": [{"role": "user", "content": 7}]}),
         "invalid_value", None),
        (CHAT_PATH, orjson.dumps(chat("a", stream="yes please")), "invalid_value", "stream"),
        (COMPLETION_PATH, orjson.dumps({"model": "m"}), "invalid_value", "prompt"),
        (COMPLETION_PATH, orjson.dumps({"model": "m", "prompt": {"text": "a"}}), "invalid_value",
         None),
    ],
    ids=["not-utf8", "empty", "truncated", "json-string", "temperature-range",
         "negative-max-tokens", "logit-bias-value", "empty-model", "content-type",
         "stream-type", "no-prompt", "prompt-object"],
)
def test_bad_bodies_get_400_envelopes_and_never_reach_upstream(
    limited: RunningGateway, fake_upstream: FakeUpstream, path: str, body: bytes, code: str,
    param: str | None,
) -> None:
    seen = len(fake_upstream.recorder.requests)
    response = _post(limited, body, path=path)
    _envelope(response, 400, code)
    if param is not None:
        assert response.json()["error"]["param"] == param
    assert len(fake_upstream.recorder.requests) == seen
