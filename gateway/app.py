"""The app factory: heavy objects built once in the lifespan, thin routes over the pipeline."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse, Response

from gateway.auth import Principal
from gateway.errors import GatewayError, json_response
from gateway.protocol import ChatCompletionRequest, CompletionRequest
from gateway.settings import Settings
from gateway.stages import Kind, RequestContext

log = logging.getLogger("lethe")


_ENVELOPE: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
        }
    },
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error envelopes a route can answer with."""
    return {
        str(status): {
            "description": "OpenAI error envelope",
            "content": {"application/json": {"schema": _ENVELOPE}},
        }
        for status in statuses
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Pydantic's local `$defs` refs do not resolve inside an OpenAPI document: inline them."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string", "description": "a JSON chunk, or [DONE] at the end"},
        "event": {"type": "string"},
        "id": {"type": "string"},
    },
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema()
    body = _inline(raw, raw.pop("$defs", {}))
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {
                "description": "A completion, or its event stream when `stream` is true",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    # Before OpenAPI 3.2 an event-stream schema describes one event.
                    "text/event-stream": {"schema": SSE_EVENT_SCHEMA},
                },
            },
            **_errors(400, 401, 404, 413, 502, 503, 504),
        },
    }


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from gateway.runtime import Runtime

        runtime = await Runtime.start(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="Lethe", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        response = exc.response()
        if exc.status == 408:
            # The rest of a trickled body would arrive as the next request: end the connection.
            response.headers["connection"] = "close"
        return response

    @app.post("/v1/chat/completions", openapi_extra=_schema(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        return await _complete(request, "chat", ChatCompletionRequest)

    @app.post("/v1/completions", openapi_extra=_schema(CompletionRequest))
    async def completions(request: Request) -> Response:
        return await _complete(request, "completion", CompletionRequest)

    @app.get("/v1/models", responses=_errors(401, 502, 504))
    async def models(request: Request) -> Response:
        runtime = request.app.state.runtime
        runtime.keys.authenticate(request.headers.get("authorization"))
        return json_response(await runtime.list_models())

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "Not ready (draining, upstream down)"}})
    async def readyz(request: Request) -> Response:
        ready, detail = await request.app.state.runtime.readiness()
        return json_response({"ready": ready, **detail}, 200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        if settings.metrics_port:
            # Served on the metrics port only, out of the clients' reach.
            raise GatewayError(404, "metrics are served on the metrics port", code=404)
        body, content_type = request.app.state.runtime.metrics.render()
        return Response(body, media_type=content_type)

    from gateway.admin import router as admin_router

    app.include_router(admin_router)
    return app


async def _complete(request: Request, kind: Kind, model: type[BaseModel]) -> Response:
    runtime = request.app.state.runtime
    principal: Principal = runtime.keys.authenticate(request.headers.get("authorization"))
    body = await read_json(request, runtime.settings)
    validate(model, body)
    ctx = RequestContext(
        request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
        kind=kind,
        tenant=principal.tenant,
        requested_model=body["model"],
    )
    await runtime.check_model(ctx.requested_model)
    async with runtime.request(ctx) as scope:
        response = await _until_disconnect(request, runtime.pipeline.handle(scope, body))
        return scope.hand_over(response)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """The body, counted on the bytes actually read, parsed and bounded in depth."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"request body exceeds {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in _timed_body(request, settings):
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body exceeds {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise GatewayError(
            400, f"request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(data, dict):
        raise GatewayError(400, "request body must be a JSON object", code="invalid_json")
    _check_depth(data, settings.max_json_depth)
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > settings.max_messages:
        raise GatewayError(
            400,
            f"too many messages (limit {settings.max_messages})",
            param="messages",
            code="too_many_messages",
        )
    return data


async def _timed_body(request: Request, settings: Settings) -> AsyncIterator[bytes]:
    """The body's chunks, the whole within `body_read_timeout_s` and no gap between two longer
    than `body_idle_timeout_s`: a client trickling bytes (slowloris) gets 408, not a worker."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.body_read_timeout_s
    chunks = request.stream()
    while True:
        until = min(deadline, loop.time() + settings.body_idle_timeout_s)
        try:
            async with asyncio.timeout_at(until):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except ClientDisconnect:
            # The client left mid-body: nothing to answer and nothing worth a traceback (a
            # client could flood the log with them).
            raise GatewayError(499, "client closed the request", code="client_closed") from None
        except TimeoutError:
            raise GatewayError(
                408, "request body not received in time", code="body_timeout"
            ) from None
        yield chunk


def _check_depth(data: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise GatewayError(400, f"JSON nested deeper than {limit} levels", code="too_deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


def validate(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    try:
        # Strict: what passes must match the published schema (no `false` taken as seed 0).
        return model.model_validate(body, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise GatewayError(
            400, f"invalid request: {param}: {first['msg']}", param=param, code="invalid_value"
        ) from exc


async def _until_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Cancel the upstream call when the client goes away before the answer is ready."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        # Even when it finished before the cancel landed: what it opened is the scope's.
        with suppress(asyncio.CancelledError):
            await task
        return Response(status_code=499)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
