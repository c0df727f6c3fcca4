"""Relaying vLLM's SSE stream to the client, event by event.

Without output policies the events are forwarded as they come (only checked to be SSE).
With them, each choice's text goes through its own guard, which holds text back until
every filter has cleared it; a block ends that choice with finish_reason content_filter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.limits import strip_choice, strip_response
from gateway.stages import ChoiceGuard, Kind, RequestStages
from gateway.upstream import UpstreamIOError, UpstreamResponse, UpstreamTimeout, sse_batches

DONE = b"data: [DONE]\n\n"


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_event(message: str, reason: str, code: int = 502) -> bytes:
    body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
    return sse_event(orjson.dumps(body))


class StreamOutcome:
    """What happened to a stream, for metrics and audit once it ends."""

    def __init__(self) -> None:
        self.first_byte_at: float | None = None
        self.error_reason: str | None = None
        self.blocked_choices: int = 0
        self.client_gone = True


async def relay(
    upstream: UpstreamResponse,
    *,
    kind: Kind,
    stages: RequestStages,
    n: int,
    outcome: StreamOutcome,
    rename_model: tuple[str, str] | None = None,
    on_first_event: Callable[[], None] | None = None,
    on_close: Callable[[StreamOutcome], None] | None = None,
) -> AsyncIterator[bytes]:
    relay_events = _guarded if stages.output_active else _pass_through
    try:
        async for event in relay_events(upstream, kind, stages, n, outcome, rename_model):
            if on_first_event is not None:
                on_first_event()
                on_first_event = None
            yield event
        outcome.client_gone = False
    finally:
        await upstream.close()
        if on_close is not None:
            on_close(outcome)


async def _batches(
    upstream: UpstreamResponse, outcome: StreamOutcome
) -> AsyncIterator[list[bytes]]:
    """Upstream payloads up to [DONE], a read's worth at a time; a cut or malformed stream is
    recorded in `outcome`."""
    try:
        async for batch in sse_batches(upstream.aiter_raw()):
            for i, payload in enumerate(batch):
                if payload == b"[DONE]" or not payload.startswith(b"{"):
                    if payload != b"[DONE]":
                        outcome.error_reason = "malformed"
                    if i:
                        yield batch[:i]
                    return
            yield batch
    except UpstreamTimeout:
        outcome.error_reason = "timeout"
        return
    except UpstreamIOError:
        outcome.error_reason = "stream_cut"
        return
    outcome.error_reason = "stream_cut"


async def _events(upstream: UpstreamResponse, outcome: StreamOutcome) -> AsyncIterator[bytes]:
    async for batch in _batches(upstream, outcome):
        for payload in batch:
            yield payload


_ERROR_TEXT = {
    "malformed": "upstream sent a malformed event stream",
    "timeout": "upstream stopped sending before the stream ended",
    "stream_cut": "upstream stream ended before it was complete",
}


async def _pass_through(
    upstream: UpstreamResponse,
    kind: Kind,
    stages: RequestStages,
    n: int,
    outcome: StreamOutcome,
    rename_model: tuple[str, str] | None,
) -> AsyncIterator[bytes]:
    # The events of one upstream read leave in one write: no per-event trip through the server.
    swap = None
    if rename_model is not None:
        swap = tuple(orjson.dumps({"model": name})[1:-1] for name in rename_model)
    async for batch in _batches(upstream, outcome):
        if swap is not None:
            batch = [payload.replace(swap[0], swap[1]) for payload in batch]
        yield b"".join([b"data: " + payload + b"\n\n" for payload in batch])
    if outcome.error_reason is not None:
        yield error_event(_ERROR_TEXT[outcome.error_reason], outcome.error_reason)
    yield DONE


class _ChoiceState:
    __slots__ = ("done", "guard")

    def __init__(self, guard: ChoiceGuard) -> None:
        self.guard = guard
        self.done = False


async def _guarded(
    upstream: UpstreamResponse,
    kind: Kind,
    stages: RequestStages,
    n: int,
    outcome: StreamOutcome,
    rename_model: tuple[str, str] | None,
) -> AsyncIterator[bytes]:
    choices: dict[int, _ChoiceState] = {}
    async for payload in _events(upstream, outcome):
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            outcome.error_reason = "malformed"
            break
        if not isinstance(chunk, dict):
            outcome.error_reason = "malformed"
            break
        if "error" in chunk:
            yield sse_event(payload)
            yield DONE
            return
        out: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            state = choices.get(index)
            if state is None:
                state = choices[index] = _ChoiceState(stages.choice_guard(index))
            if state.done:
                continue
            emitted = await _guard_choice(kind, choice, state, outcome)
            if emitted is not None:
                out.append(emitted)
        if out or chunk.get("usage") is not None:
            chunk["choices"] = out
            strip_response(chunk)
            if rename_model is not None and "model" in chunk:
                chunk["model"] = rename_model[1]
            yield sse_event(orjson.dumps(chunk))
        if (
            len(choices) >= n
            and all(s.done for s in choices.values())
            and outcome.blocked_choices
        ):
            # Every choice ended, some by a block: stop paying for upstream tokens.
            yield DONE
            return
    if outcome.error_reason is not None:
        # Held-back text is never released from a broken stream: it was not cleared.
        yield error_event(_ERROR_TEXT[outcome.error_reason], outcome.error_reason)
    yield DONE


async def _guard_choice(
    kind: Kind, choice: dict[str, Any], state: _ChoiceState, outcome: StreamOutcome
) -> dict[str, Any] | None:
    finish = choice.get("finish_reason")
    if kind == "chat":
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
    else:
        delta = None
        text = choice.get("text") or ""
    release = await state.guard.feed(text, final=finish is not None)
    strip_choice(choice)
    if release.blocked:
        state.done = True
        outcome.blocked_choices += 1
        finish = "content_filter"
    elif finish is not None:
        state.done = True
    released = release.text + release.replacement
    if kind == "chat":
        assert delta is not None
        if "content" in delta or released:
            delta["content"] = released
        if not released and finish is None and set(delta) <= {"content"}:
            return None
        choice["delta"] = delta
    else:
        if not released and finish is None:
            return None
        choice["text"] = released
    choice["finish_reason"] = finish
    return choice
