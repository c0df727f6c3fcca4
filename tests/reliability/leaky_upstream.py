"""An upstream that puts the answer's text in every side channel vLLM can return: logprobs,
token ids, prompt logprobs, reasoning content, tool calls. Real HTTP on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stack.processes import free_port


def _side_channels(secret: str) -> dict[str, Any]:
    return {
        "logprobs": {"content": [{"token": secret, "logprob": -0.1,
                                  "top_logprobs": [{"token": secret, "logprob": -0.1}]}]},
        "token_ids": [ord(c) for c in secret],
        "prompt_logprobs": [None, {"1": {"decoded_token": secret, "logprob": -1.0}}],
        "stop_reason": None,
    }


def _message(secret: str) -> dict[str, Any]:
    return {"role": "assistant", "content": "A clean answer.", "reasoning_content": secret,
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "f", "arguments": secret}}]}


def build_app(secret: str, received: list[dict[str, Any]]) -> Starlette:
    async def complete(request: Request) -> Response:
        body = await request.json()
        received.append(body)
        chat = request.url.path.endswith("chat/completions")
        top = {"id": "leaky", "created": 1, "model": body.get("model"),
               "prompt_token_ids": [ord(c) for c in secret],
               "prompt_logprobs": [{"1": {"decoded_token": secret}}]}
        if not body.get("stream"):
            choice = {"index": 0, "finish_reason": "stop", **_side_channels(secret)}
            if chat:
                choice["message"] = _message(secret)
            else:
                choice["text"] = "A clean answer."
            return JSONResponse({**top, "object": "chat.completion", "choices": [choice]})

        async def events() -> AsyncIterator[bytes]:
            for text, finish in (("A clean ", None), ("answer.", "stop")):
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish,
                                          **_side_channels(secret)}
                if chat:
                    choice["delta"] = {"content": text, "reasoning_content": secret,
                                       "tool_calls": _message(secret)["tool_calls"]}
                else:
                    choice["text"] = text
                yield b"data: " + orjson.dumps({**top, "object": "chunk",
                                                "choices": [choice]}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def health(request: Request) -> Response:
        return Response(b"")

    return Starlette(routes=[
        Route("/v1/chat/completions", complete, methods=["POST"]),
        Route("/v1/completions", complete, methods=["POST"]),
        Route("/v1/models", models),
        Route("/health", health),
    ])


class LeakyUpstream:
    def __init__(self, secret: str) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        config = uvicorn.Config(build_app(secret, self.received), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LeakyUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("leaky upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
