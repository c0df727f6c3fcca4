"""A fast, deterministic OpenAI-compatible upstream for benchmarks, in its own process.

A bare asyncio protocol on uvloop with httptools' parser: no framework between the socket and
the answer, and every chunk pre-serialised per model name, so the mock costs the same tiny
amount whichever proxy sits in front of it. Answers `POST /v1/chat/completions` and
`POST /v1/completions` (streamed or not), `GET /health`, `GET /v1/models`, and
`POST /_config` (new timing defaults, JSON body) so one mock serves every scenario.

Each stream event carries `system_fingerprint: "fp-<monotonic ns at send>"`; a client on the
same host subtracts it from the arrival time to get what a proxy adds to each chunk.
`max_tokens` in the request sets the number of tokens (content chunks).

    python -m bench.mock_upstream --port 8101 --ttft-ms 0 --itl-ms 0 --tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import httptools
import orjson

_SENTENCE = (
    "the river runs past the old mill while the town wakes slowly under a pale grey sky "
    "and bakers open their doors to the smell of warm bread and fresh coffee"
)
WORDS = _SENTENCE.split()
_FP = "fp-0000000000"
_CREATED = 1_700_000_000


@dataclass
class MockConfig:
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    tokens: int = 16


def token_text(index: int, seed: int = 0) -> str:
    """Word `index` of the answer; the request's `seed` picks one of several hundred word
    orders, so a benchmark can send answers a filter has never seen (and never cached)."""
    n = len(WORDS)
    return " " + WORDS[(seed + index * (1 + (seed // n) % 11)) % n]


def _chunk_dict(kind: str, model: str, text: str | None, finish: str | None) -> dict[str, Any]:
    if kind == "chat":
        delta: dict[str, Any] = {"content": text or ""}
        if text is None:
            delta = {"role": "assistant", "content": ""}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None}
        obj = "text_completion"
    choice["finish_reason"] = finish
    return {
        "id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-mock",
        "object": obj,
        "created": _CREATED,
        "model": model,
        "system_fingerprint": _FP,
        "choices": [choice],
    }


class _Split:
    """An SSE event pre-serialised around its send-time stamp."""

    __slots__ = ("head", "tail")

    def __init__(self, payload: dict[str, Any]) -> None:
        raw = b"data: " + orjson.dumps(payload) + b"\n\n"
        self.head, self.tail = raw.split(_FP.encode())

    def render(self) -> bytes:
        body = self.head + b"fp-%d" % time.monotonic_ns() + self.tail
        return b"%x\r\n%b\r\n" % (len(body), body)


class Catalogue:
    """Pre-serialised streams and whole answers, built once per (kind, model, tokens)."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str, int], list[_Split]] = {}
        self._whole: dict[tuple[str, str, int, int], bytes] = {}

    def stream(self, kind: str, model: str, tokens: int, seed: int = 0) -> list[_Split]:
        events = self._streams.get((kind, model, seed))
        if events is None or len(events) < tokens + 2:
            size = max(tokens, 64)
            first = [_Split(_chunk_dict(kind, model, None, None))] if kind == "chat" else []
            body = [_Split(_chunk_dict(kind, model, token_text(i, seed), None))
                    for i in range(size)]
            events = first + body
            self._streams[(kind, model, seed)] = events
        head = 1 if kind == "chat" else 0
        return events[: head + tokens]

    def finish(self, kind: str, model: str) -> _Split:
        return _Split(_chunk_dict(kind, model, "", "length"))

    def whole(self, kind: str, model: str, tokens: int, seed: int = 0) -> bytes:
        key = (kind, model, tokens, seed)
        raw = self._whole.get(key)
        if raw is None:
            text = "".join(token_text(i, seed) for i in range(tokens))
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "length"}
            if kind == "chat":
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            payload = {
                "id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-mock",
                "object": "chat.completion" if kind == "chat" else "text_completion",
                "created": _CREATED,
                "model": model,
                "choices": [choice],
                "usage": {"prompt_tokens": 8, "completion_tokens": tokens,
                          "total_tokens": 8 + tokens},
            }
            raw = self._whole[key] = _response(200, orjson.dumps(payload))
        return raw


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return (
        b"HTTP/1.1 %d %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b"
        % (status, reason, content_type, len(body), body)
    )


def _error(status: int, message: str) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": status}}
    return _response(status, orjson.dumps(body))


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
_KINDS = {b"/v1/chat/completions": "chat", b"/v1/completions": "completion"}


class MockServer:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.catalogue = Catalogue()
        self.models = orjson.dumps(
            {"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "bench"}]}
        )


class _Connection(asyncio.Protocol):
    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.task: asyncio.Task[None] | None = None
        self.queue: list[tuple[bytes, bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_error(400, "bad request"))
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.queue.append((method, self.url.split(b"?", 1)[0], b"".join(self.body)))
        self.url, self.body = b"", []
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self.queue and self.transport is not None:
            method, path, body = self.queue.pop(0)
            await self._answer(method, path, body)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    async def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        server = self.server
        if method == b"GET" and path == b"/health":
            self._write(_response(200, b"{}"))
            return
        if method == b"GET" and path == b"/v1/models":
            self._write(_response(200, server.models))
            return
        if method == b"POST" and path == b"/_config":
            update = orjson.loads(body) if body else {}
            server.config = MockConfig(**{**asdict(server.config), **update})
            self._write(_response(200, orjson.dumps(asdict(server.config))))
            return
        kind = _KINDS.get(path)
        if method != b"POST" or kind is None:
            self._write(_error(404, f"no route {path.decode(errors='replace')}"))
            return
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._write(_error(400, "body is not JSON"))
            return
        if not isinstance(request, dict):
            self._write(_error(400, "body is not a JSON object"))
            return
        config = server.config
        model = str(request.get("model") or "mock")
        tokens = int(request.get("max_tokens") or config.tokens)
        seed = int(request.get("seed") or 0)
        if request.get("stream"):
            await self._stream(kind, model, tokens, seed, config)
        else:
            delay = config.ttft_ms + config.itl_ms * max(tokens - 1, 0)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            self._write(server.catalogue.whole(kind, model, tokens, seed))

    async def _stream(
        self, kind: str, model: str, tokens: int, seed: int, config: MockConfig
    ) -> None:
        catalogue = self.server.catalogue
        events = catalogue.stream(kind, model, tokens, seed)
        self._write(_STREAM_HEAD)
        if config.ttft_ms > 0:
            await asyncio.sleep(config.ttft_ms / 1000)
        finish = catalogue.finish(kind, model)
        if config.itl_ms <= 0:
            self._write(b"".join(e.render() for e in events) + finish.render() + _DONE)
            return
        head = 1 if kind == "chat" else 0
        self._write(b"".join(e.render() for e in events[: head + 1]))
        for event in events[head + 1 :]:
            await asyncio.sleep(config.itl_ms / 1000)
            self._write(event.render())
        self._write(finish.render() + _DONE)


async def serve(host: str, port: int, config: MockConfig) -> None:
    server = MockServer(config)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Connection(server), host, port, backlog=1024)
    print(f"mock upstream on http://{host}:{port} ({config})", flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mock_upstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="inter-token latency")
    parser.add_argument("--tokens", type=int, default=16, help="tokens when max_tokens is unset")
    args = parser.parse_args(argv)
    import uvloop

    config = MockConfig(args.ttft_ms, args.itl_ms, args.tokens)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
