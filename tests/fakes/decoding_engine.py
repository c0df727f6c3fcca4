"""A fake vLLM with or without Lethe's decoding processor: a real HTTP server on loopback.

With `manifest` set it validates `vllm_xargs` exactly as the engine's API server does, through
the processor's own check (decoding.policies.check_request): the gateway's probe gets the
manifest back in a 400, a request naming a policy it does not hold gets a 400. Without it,
`vllm_xargs` are ignored, as by an engine started without the processor. Every completion
answers `text` and is recorded, so tests see what the gateway sent upstream.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from decoding import PROBE_ARG
from decoding.policies import check_request
from stack.processes import free_port

MODEL = "fake-model"


class FakeDecodingEngine:
    def __init__(self, text: str, manifest: dict[str, str] | None) -> None:
        self.text = text
        self.manifest = manifest
        self.requests: list[dict[str, Any]] = []
        self.probes = 0
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/health", self._health),
                Route("/v1/models", self._models),
                Route("/v1/completions", self._complete, methods=["POST"]),
                Route("/v1/chat/completions", self._complete, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _health(self, request: Request) -> JSONResponse:
        return JSONResponse({})

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        xargs = body.get("vllm_xargs")
        if isinstance(xargs, dict) and PROBE_ARG in xargs:
            self.probes += 1
        else:
            self.requests.append(body)
        if self.manifest is not None:
            try:
                check_request(xargs, self.manifest)
            except ValueError as exc:
                error = {"message": str(exc), "type": "BadRequestError", "param": None}
                return JSONResponse({"error": {**error, "code": 400}}, status_code=400)
        if request.url.path.endswith("/chat/completions"):
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": self.text},
                "finish_reason": "stop",
            }
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": self.text, "finish_reason": "stop"}
            kind = "text_completion"
        usage = {"prompt_tokens": 3, "completion_tokens": 30, "total_tokens": 33}
        return JSONResponse(
            {
                "id": "fake",
                "object": kind,
                "created": 1,
                "model": MODEL,
                "choices": [choice],
                "usage": usage,
            }
        )

    def __enter__(self) -> FakeDecodingEngine:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake decoding engine did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
