"""A scripted OpenAI-compatible upstream: a real HTTP server on loopback.

Each request carries its script, so one server serves every edge case. The script travels in
the OpenAI `user` field as `fake:<json>` (a field the gateway forwards even while policies are
active and refuse unknown fields), or in an extra body field `fake` (only reaches the upstream
through a gateway with no active policy):
  text            the answer (split into chunks by `chunks`, a list of strings, if given)
  mode            normal | cut | malformed_sse | malformed_json | status | hang | no_done
  status          HTTP status for mode=status; `error_shape` "nested" (default) or "flat"
  first_byte_s    delay before the response starts
  chunk_delay_s   delay between stream events
  raw_events      stream: payloads sent as they are, each as `data: <payload>` (a string) or
                  as JSON (anything else); a string starting with ":" is sent as an SSE comment
                  line; replaces the generated chunks (no [DONE] unless listed)
  raw_whole       non-stream: this JSON object is the whole answer, as it is
  comment_every_s with mode=comments: send only SSE comments, one every this many seconds
  trickle_whole   mode: a whole (non-stream) answer sent 16 bytes at a time, `chunk_delay_s`
                  apart

Like vLLM, it can require an API key on its /v1 routes (`Recorder.api_key`), lists loaded LoRA
adapters in /v1/models (`root` = their path), refuses to load a name it holds unless
`load_inplace`, and tokenizes (/tokenize, /detokenize) with `Recorder.tokenizer` when a test
sets one (404 otherwise, like an upstream without those routes).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stack.processes import free_port


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.cancelled = 0
        self.completed_streams = 0
        self.adapters: dict[str, str] = {}
        #: Every LoRA load and unload asked for, in order (load bodies, unloaded names).
        self.lora_loads: list[dict[str, Any]] = []
        self.lora_unloads: list[str] = []
        #: When set, /v1 routes answer 401 unless `Authorization: Bearer <api_key>`.
        self.api_key: str | None = None
        self.authorizations: list[str | None] = []
        #: A Hugging Face tokenizer for /tokenize and /detokenize; None: those answer 404.
        self.tokenizer: Any = None
        #: When set, every LoRA load fails with a 500 (a replica that cannot read the store).
        self.refuse_loads: str | None = None


class _ApiKeyGuard:
    """vLLM's --api-key: /v1 routes need the bearer token, /health and /tokenize do not."""

    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            authorization = Headers(scope=scope).get("authorization")
            self.recorder.authorizations.append(authorization)
            key = self.recorder.api_key
            if key is not None and authorization != f"Bearer {key}":
                await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _chunk(kind: str, index: int, text: str | None, finish: str | None, model: str) -> bytes:
    if kind == "chat":
        delta: dict[str, Any] = {} if text is None else {"content": text}
        choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": index, "text": text or "", "finish_reason": finish}
        obj = "text_completion"
    payload = {"id": "fake-1", "object": obj, "created": 1, "model": model, "choices": [choice]}
    return b"data: " + orjson.dumps(payload) + b"\n\n"


FAKE_PREFIX = "fake:"


def script(**fields: Any) -> dict[str, Any]:
    """Request fields that carry a script to the fake upstream through any gateway."""
    return {"user": FAKE_PREFIX + orjson.dumps(fields).decode()}


def script_of(body: dict[str, Any]) -> dict[str, Any]:
    user = body.get("user")
    if isinstance(user, str) and user.startswith(FAKE_PREFIX):
        parsed = orjson.loads(user[len(FAKE_PREFIX) :])
        return parsed if isinstance(parsed, dict) else {}
    fake = body.get("fake")
    return fake if isinstance(fake, dict) else {}


def build_app(recorder: Recorder) -> Starlette:
    async def complete(request: Request) -> Response:
        body = await request.json()
        recorder.requests.append(body)
        kind = "chat" if request.url.path.endswith("chat/completions") else "completion"
        script = script_of(body)
        mode = script.get("mode", "normal")
        model = body.get("model", "fake-model")
        await asyncio.sleep(float(script.get("first_byte_s", 0)))
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "status":
            status = int(script.get("status", 500))
            message = script.get("message", "scripted failure")
            if script.get("error_shape") == "flat":
                err = {
                    "object": "error",
                    "message": message,
                    "type": "BadRequestError",
                    "param": None,
                    "code": status,
                }
            else:
                err = {
                    "error": {
                        "message": message,
                        "type": "BadRequestError",
                        "param": None,
                        "code": status,
                    }
                }
            return JSONResponse(err, status_code=status)
        text = script.get("text", "Hello from the fake upstream.")
        pieces: list[str] = script.get("chunks") or [
            text[i : i + 4] for i in range(0, len(text), 4)
        ]
        n = int(body.get("n") or 1)
        if not body.get("stream") and "raw_whole" in script:
            return Response(orjson.dumps(script["raw_whole"]), media_type="application/json")
        if not body.get("stream") and mode == "trickle_whole":
            return StreamingResponse(_trickle(text, script), media_type="application/json")
        if body.get("stream") and ("raw_events" in script or mode == "comments"):
            return StreamingResponse(
                _raw_events(script, recorder), media_type="text/event-stream"
            )
        if not body.get("stream"):
            if mode == "malformed_json":
                return Response(b'{"choices": [', media_type="application/json")
            choices = []
            for i in range(n):
                if kind == "chat":
                    choices.append(
                        {
                            "index": i,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    )
                else:
                    choices.append(
                        {"index": i, "text": text, "finish_reason": "stop", "logprobs": None}
                    )
            return JSONResponse(
                {
                    "id": "fake-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": 3,
                        "completion_tokens": len(pieces),
                        "total_tokens": 3 + len(pieces),
                    },
                }
            )
        delay = float(script.get("chunk_delay_s", 0))

        async def events() -> AsyncIterator[bytes]:
            try:
                if kind == "chat":
                    for i in range(n):
                        yield (
                            _chunk(kind, i, "", None, model).replace(
                                b'"delta":{"content":""}',
                                b'"delta":{"role":"assistant","content":""}',
                            )
                        )
                for j, piece in enumerate(pieces):
                    if mode == "cut" and j == len(pieces) // 2:
                        raise ConnectionResetError("scripted cut")
                    if mode == "malformed_sse" and j == len(pieces) // 2:
                        yield b"data: this is not json\n\n"
                        continue
                    for i in range(n):
                        yield _chunk(kind, i, piece, None, model)
                    if delay:
                        await asyncio.sleep(delay)
                for i in range(n):
                    yield _chunk(kind, i, None if kind == "chat" else "", "stop", model)
                options = body.get("stream_options") or {}
                if options.get("include_usage"):
                    usage = {
                        "id": "fake-1",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 3,
                            "completion_tokens": len(pieces),
                            "total_tokens": 3 + len(pieces),
                        },
                    }
                    yield b"data: " + orjson.dumps(usage) + b"\n\n"
                if mode != "no_done":
                    yield b"data: [DONE]\n\n"
                recorder.completed_streams += 1
            except asyncio.CancelledError:
                recorder.cancelled += 1
                raise

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": "fake-model", "object": "model", "owned_by": "fake", "parent": None},
                    {
                        "id": "fake-adapter",
                        "object": "model",
                        "owned_by": "fake",
                        "parent": "fake-model",
                    },
                    *(
                        {
                            "id": name,
                            "object": "model",
                            "owned_by": "fake",
                            "root": path,
                            "parent": "fake-model",
                        }
                        for name, path in list(recorder.adapters.items())
                    ),
                ],
            }
        )

    async def health(request: Request) -> Response:
        return Response(b"")

    async def load_lora(request: Request) -> Response:
        body = await request.json()
        recorder.lora_loads.append(body)
        if body["lora_name"] in recorder.adapters and not body.get("load_inplace"):
            message = (
                f"The lora adapter '{body['lora_name']}' has already been loaded. If you want "
                "to load the adapter in place, set 'load_inplace' to True."
            )
            return JSONResponse(
                {"error": {"message": message, "type": "BadRequestError", "param": None,
                           "code": 400}},
                status_code=400,
            )
        if recorder.refuse_loads is not None:
            return JSONResponse(
                {"error": {"message": recorder.refuse_loads, "type": "InternalServerError",
                           "param": None, "code": 500}},
                status_code=500,
            )
        if "broken" in body.get("lora_path", ""):
            return JSONResponse(
                {
                    "error": {
                        "message": "cannot load adapter",
                        "type": "BadRequest",
                        "param": None,
                        "code": 400,
                    }
                },
                status_code=400,
            )
        recorder.adapters[body["lora_name"]] = body["lora_path"]
        return Response(b"Success: LoRA adapter loaded.")

    async def unload_lora(request: Request) -> Response:
        body = await request.json()
        recorder.lora_unloads.append(body["lora_name"])
        recorder.adapters.pop(body["lora_name"], None)
        return Response(b"Success: LoRA adapter unloaded.")

    async def tokenize(request: Request) -> Response:
        if recorder.tokenizer is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        ids = recorder.tokenizer.encode(
            body["prompt"], add_special_tokens=body.get("add_special_tokens", True)
        )
        return JSONResponse({"count": len(ids), "max_model_len": 2048, "tokens": ids})

    async def detokenize(request: Request) -> Response:
        if recorder.tokenizer is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await request.json()
        size = len(recorder.tokenizer)
        if any(not 0 <= i < size for i in body["tokens"]):
            return JSONResponse(
                {"error": {"message": "token id out of vocabulary", "type": "BadRequestError",
                           "param": None, "code": 400}},
                status_code=400,
            )
        return JSONResponse({"prompt": recorder.tokenizer.decode(body["tokens"])})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", complete, methods=["POST"]),
            Route("/v1/completions", complete, methods=["POST"]),
            Route("/v1/models", models),
            Route("/health", health),
            Route("/v1/load_lora_adapter", load_lora, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload_lora, methods=["POST"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"]),
        ],
        middleware=[Middleware(_ApiKeyGuard, recorder=recorder)],
    )


async def _trickle(text: str, script: dict[str, Any]) -> AsyncIterator[bytes]:
    whole = orjson.dumps({
        "id": "fake-1", "object": "chat.completion", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop", "logprobs": None}],
    })
    delay = float(script.get("chunk_delay_s", 0.1))
    for start in range(0, len(whole), 16):
        yield whole[start:start + 16]
        await asyncio.sleep(delay)


async def _raw_events(script: dict[str, Any], recorder: Recorder) -> AsyncIterator[bytes]:
    try:
        if script.get("mode") == "comments":
            every = float(script.get("comment_every_s", 0.5))
            while True:
                yield b": keep-alive\n\n"
                await asyncio.sleep(every)
        delay = float(script.get("chunk_delay_s", 0))
        for event in script.get("raw_events") or ():
            if isinstance(event, str) and event.startswith(":"):
                yield event.encode() + b"\n\n"
            elif isinstance(event, str):
                yield b"data: " + event.encode() + b"\n\n"
            else:
                yield b"data: " + orjson.dumps(event) + b"\n\n"
            if delay:
                await asyncio.sleep(delay)
        recorder.completed_streams += 1
    except asyncio.CancelledError:
        recorder.cancelled += 1
        raise


class FakeUpstream:
    """Runs the scripted upstream in a background thread for the duration of a test session."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.recorder = Recorder()
        config = uvicorn.Config(
            build_app(self.recorder),
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
