"""A malicious, vLLM-shaped upstream: a real HTTP server on loopback, scripted per test.

The red-team suite does not send its script through the gateway (a policy gateway may screen,
redact or drop any request field, `user` included); the test sets the script on the server
before it sends the request, and every request the server receives plays the current script.
Tests run one at a time, so "current" is unambiguous; concurrent cases (availability,
starvation) play one script for all their requests.

Like vLLM, the server applies the request's `stop` strings to its scripted text (cutting the
text and naming the matched string in `stop_reason`) and echoes the prompt when asked: a gateway
that forwards those fields gets the oracle answers a real engine would give.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stack.processes import free_port

MODEL = "redteam-model"



@dataclass(frozen=True)
class Script:
    """What the upstream answers. Only the fields a case needs are set."""

    text: str = "A plain answer from the scripted upstream."
    #: stream pieces; None = 8-character pieces of `text`
    chunks: tuple[str, ...] | None = None
    chunk_delay_s: float = 0.0
    #: delay before the answer starts (whole and stream)
    first_byte_s: float = 0.0
    #: stream: events sent as they are (dict/list -> JSON `data:`, str -> `data: <str>`,
    #: str starting with ":" -> comment line, bytes -> written raw); replaces generated chunks
    raw_events: tuple[Any, ...] | None = None
    #: whole: this JSON value (or raw bytes) is the body, status 200
    raw_whole: Any = None
    #: an HTTP error answer (whole and stream) with this status and body
    status: int | None = None
    error_body: Any = None
    #: normal | comments (SSE comments only, forever) | hang (headers, then nothing)
    mode: str = "normal"
    comment_every_s: float = 0.2
    #: chunks of text sent before comment mode starts
    lead: tuple[str, ...] = ()
    finish_reason: str = "stop"
    stop_reason: Any = None
    #: extra keys merged into every streamed chunk / the whole answer's top level
    extra_top: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    at: float


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.open_streams = 0
        self.cancelled = 0
        self._lock = threading.Lock()

    def add(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(Recorded(path, body, time.monotonic()))

    def mark(self) -> int:
        return len(self.requests)

    def since(self, mark: int) -> list[Recorded]:
        return self.requests[mark:]


def _stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _apply_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """vLLM: the text is cut before the earliest stop string, which becomes `stop_reason`."""
    best: tuple[int, str] | None = None
    for s in stops:
        at = text.find(s)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, s)
    if best is None:
        return text, None
    return text[: best[0]], best[1]


def _echo_prefix(kind: str, body: dict[str, Any]) -> str:
    if not body.get("echo"):
        return ""
    if kind == "completion":
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            return "".join(p for p in prompt if isinstance(p, str))
        return prompt if isinstance(prompt, str) else ""
    messages = body.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    return content if isinstance(content, str) else ""


def _pieces(text: str, chunks: tuple[str, ...] | None) -> list[str]:
    if chunks is not None:
        return list(chunks)
    return [text[i : i + 8] for i in range(0, len(text), 8)]


def _chunk(kind: str, text: str | None, finish: str | None, stop_reason: Any,
           extra: dict[str, Any], role: bool = False) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        choice["delta"] = delta
        obj = "chat.completion.chunk"
    else:
        choice["text"] = text or ""
        obj = "text_completion"
    if finish is not None:
        choice["stop_reason"] = stop_reason
    payload = {"id": "rt-1", "object": obj, "created": 1, "model": MODEL, "choices": [choice],
               **extra}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _raw_event(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str) and event.startswith(":"):
        return event.encode() + b"\n\n"
    if isinstance(event, str):
        return b"data: " + event.encode() + b"\n\n"
    return b"data: " + orjson.dumps(event) + b"\n\n"


class ScriptedUpstream:
    """Runs the malicious upstream in a background thread; `play(script)` sets the answer."""

    def __init__(self) -> None:
        self.port = free_port()
        self.recorder = Recorder()
        self.script = Script()
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port,
                                log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def play(self, script: Script | None = None, **fields: Any) -> Iterator[Script]:
        previous = self.script
        self.script = replace(script or Script(), **fields)
        try:
            yield self.script
        finally:
            self.script = previous

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)

    # -- the server ------------------------------------------------------------------------
    def _app(self) -> Starlette:
        async def complete(request: Request) -> Response:
            body = await request.json()
            kind = "chat" if request.url.path.endswith("chat/completions") else "completion"
            self.recorder.add(request.url.path, body)
            script = self.script
            if script.first_byte_s:
                await asyncio.sleep(script.first_byte_s)
            if script.status is not None:
                payload = script.error_body
                if isinstance(payload, bytes):
                    return Response(payload, status_code=script.status,
                                    media_type="application/json")
                return JSONResponse(payload, status_code=script.status)
            if body.get("stream"):
                return StreamingResponse(self._stream(kind, body, script),
                                         media_type="text/event-stream")
            if script.mode == "hang":
                return StreamingResponse(self._hang(), media_type="application/json")
            if script.raw_whole is not None:
                raw = script.raw_whole
                content = raw if isinstance(raw, bytes) else orjson.dumps(raw)
                return Response(content, media_type="application/json")
            return JSONResponse(self._whole(kind, body, script))

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [
                {"id": MODEL, "object": "model", "owned_by": "redteam", "parent": None}]})

        async def health(request: Request) -> Response:
            return Response(b"")

        return Starlette(routes=[
            Route("/v1/chat/completions", complete, methods=["POST"]),
            Route("/v1/completions", complete, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
        ])

    def _whole(self, kind: str, body: dict[str, Any], script: Script) -> dict[str, Any]:
        text, matched = _apply_stop(script.text, _stop_strings(body))
        stop_reason = matched if matched is not None else script.stop_reason
        text = _echo_prefix(kind, body) + text
        choice: dict[str, Any] = {"index": 0, "finish_reason": script.finish_reason,
                                  "stop_reason": stop_reason, "logprobs": None}
        if kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": "rt-1", "object": "chat.completion" if kind == "chat" else
                "text_completion", "created": 1, "model": MODEL, "choices": [choice],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
                **script.extra_top}

    async def _hang(self) -> AsyncIterator[bytes]:
        await asyncio.sleep(3600)
        yield b""

    async def _stream(self, kind: str, body: dict[str, Any],
                      script: Script) -> AsyncIterator[bytes]:
        self.recorder.open_streams += 1
        try:
            if script.raw_events is not None:
                for event in script.raw_events:
                    yield _raw_event(event)
                    if script.chunk_delay_s:
                        await asyncio.sleep(script.chunk_delay_s)
                return
            if kind == "chat":
                yield _chunk(kind, "", None, None, script.extra_top, role=True)
            echo = _echo_prefix(kind, body)
            if echo:
                yield _chunk(kind, echo, None, None, script.extra_top)
            if script.mode == "hang":
                await asyncio.sleep(3600)
            if script.mode == "comments":
                for piece in script.lead:
                    yield _chunk(kind, piece, None, None, script.extra_top)
                while True:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(script.comment_every_s)
            stops = _stop_strings(body)
            # vLLM holds back what could still become a stop string, then cuts before it.
            hold = max((len(s) for s in stops), default=1) - 1
            text = ""
            released = 0
            matched: str | None = None
            for piece in _pieces(script.text, script.chunks):
                text, matched = _apply_stop(text + piece, stops)
                upto = len(text) if matched is not None else max(released, len(text) - hold)
                if upto > released:
                    yield _chunk(kind, text[released:upto], None, None, script.extra_top)
                    released = upto
                if matched is not None:
                    break
                if script.chunk_delay_s:
                    await asyncio.sleep(script.chunk_delay_s)
            if matched is None and released < len(text):
                yield _chunk(kind, text[released:], None, None, script.extra_top)
            stop_reason = matched if matched is not None else script.stop_reason
            yield _chunk(kind, None, script.finish_reason, stop_reason, script.extra_top)
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.recorder.cancelled += 1
            raise
        finally:
            self.recorder.open_streams -= 1
