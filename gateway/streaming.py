"""Relaying vLLM's SSE stream to the client, event by event.

Without output policies the events are forwarded as they come (only checked to be SSE).
With them, each choice's text goes through its own guard, which holds text back until
every filter has cleared it; a block ends that choice with finish_reason content_filter.
Chunks are rebuilt from gateway.response_shape's allow-list; an error chunk or a malformed one
ends the stream with a generic error event and [DONE], and held-back text stays unsent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from gateway import response_shape as shape
from gateway.response_shape import Frame, Malformed, UpstreamChoice
from gateway.stages import ChoiceGuard, Kind, RequestStages
from gateway.upstream import SSEDecoder, UpstreamIOError, UpstreamResponse, UpstreamTimeout

log = logging.getLogger("lethe")

DONE = b"data: [DONE]\n\n"


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_event(message: str, reason: str, code: int = 502) -> bytes:
    body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": code}}
    return sse_event(orjson.dumps(body))


class StreamOutcome:
    """What happened to a stream, read by its request's scope once it ends."""

    def __init__(self, frame: Frame | None = None) -> None:
        #: The gateway's own id, model and created for a guarded stream's chunks.
        self.frame = frame
        #: perf_counter() before the upstream call, and at the first event sent.
        self.opened_at = time.perf_counter()
        self.first_event_at: float | None = None
        self.error_reason: str | None = None
        self.blocked_choices: int = 0


async def relay(
    upstream: UpstreamResponse,
    *,
    kind: Kind,
    stages: RequestStages,
    n: int,
    outcome: StreamOutcome,
    rename_model: tuple[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """The client's events. The upstream answer is closed by the request's scope
    (gateway.scope), not here: this generator may never start, or be left suspended, when the
    client goes away."""
    relay_events = _guarded if stages.output_active else _pass_through
    async for event in relay_events(upstream, kind, stages, n, outcome, rename_model):
        if outcome.first_event_at is None:
            outcome.first_event_at = time.perf_counter()
        yield event


async def _batches(
    upstream: UpstreamResponse, outcome: StreamOutcome
) -> AsyncIterator[list[bytes]]:
    """Upstream payloads up to [DONE], a read's worth at a time; a cut, silent or malformed
    stream is recorded in `outcome`.

    Silence is measured between `data:` events: SSE comments (": keep-alive") and blank lines
    keep the connection busy but do not reset the upstream's idle timeout.
    """
    loop = asyncio.get_running_loop()
    idle = upstream.read_timeout
    deadline = loop.time() + idle
    decoder = SSEDecoder()
    try:
        while True:
            piece = await upstream.read_some(deadline)
            batch = decoder.feed(piece) if piece else decoder.close()
            if batch:
                deadline = loop.time() + idle
                for i, payload in enumerate(batch):
                    if payload == b"[DONE]" or not payload.startswith(b"{"):
                        if payload != b"[DONE]":
                            outcome.error_reason = "malformed"
                        if i:
                            yield batch[:i]
                        return
                yield batch
            if not piece:
                break
    except UpstreamTimeout:
        outcome.error_reason = "timeout"
        return
    except UpstreamIOError:
        outcome.error_reason = "stream_cut"
        return
    outcome.error_reason = "stream_cut"


async def _events(
    upstream: UpstreamResponse, outcome: StreamOutcome
) -> AsyncGenerator[bytes, None]:
    async for batch in _batches(upstream, outcome):
        for payload in batch:
            yield payload


_ERROR_TEXT = {
    "malformed": "upstream sent a malformed event stream",
    "timeout": "upstream stopped sending before the stream ended",
    "stream_cut": "upstream stream ended before it was complete",
    # An upstream error chunk: its message could quote the prompt or the withheld output.
    "status_5xx": "upstream error",
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
    frame = outcome.frame or Frame.fallback(kind, rename_model[1] if rename_model else "", n)
    choices: dict[int, _ChoiceState] = {}
    events = _events(upstream, outcome)
    message: str | None = None
    try:
        async for payload in events:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise Malformed("invalid JSON or UTF-8") from None
            if isinstance(chunk, dict) and shape.is_error(chunk):
                outcome.error_reason = "status_5xx"
                log.warning("upstream sent an error event, request=%s", frame.request_id)
                break
            parsed, usage = shape.read_answer(frame, chunk, stream=True)
            out: list[dict[str, Any]] = []
            for choice in parsed:
                state = choices.get(choice.index)
                if state is None:
                    state = choices[choice.index] = _ChoiceState(stages.choice_guard(choice.index))
                if state.done:
                    continue
                emitted = await _guard_choice(frame, choice, state, outcome)
                if emitted is not None:
                    out.append(emitted)
            if out or usage is not None:
                yield sse_event(orjson.dumps(shape.answer(frame, out, usage, stream=True)))
            if (
                len(choices) >= frame.choices
                and all(s.done for s in choices.values())
                and outcome.blocked_choices
            ):
                # Every choice ended, some by a block: stop paying for upstream tokens.
                yield DONE
                return
    except Malformed as exc:
        # The reason is a constant of response_shape: the payload never reaches the log.
        outcome.error_reason = "malformed"
        log.warning("upstream stream malformed (%s), request=%s", exc.reason, frame.request_id)
    except Exception as exc:
        # Exception texts can quote the payload (int("415-...")): the type name only.
        outcome.error_reason = "malformed"
        message = "the gateway could not relay the upstream stream"
        log.error("guarded stream failed (%s), request=%s", type(exc).__name__,
                  frame.request_id)
    finally:
        await events.aclose()
    if outcome.error_reason is not None:
        # Held-back text is never released from a broken stream: it was not cleared.
        yield error_event(message or _ERROR_TEXT[outcome.error_reason], outcome.error_reason)
    yield DONE


async def _guard_choice(
    frame: Frame, choice: UpstreamChoice, state: _ChoiceState, outcome: StreamOutcome
) -> dict[str, Any] | None:
    finish = choice.finish_reason
    release = await state.guard.feed(choice.text or "", final=finish is not None)
    if release.blocked:
        state.done = True
        outcome.blocked_choices += 1
        finish = "content_filter"
    elif finish is not None:
        state.done = True
    released = release.text + release.replacement
    if not released and finish is None and not choice.role:
        return None
    text = released if released or choice.text is not None else None
    return shape.choice(frame, choice.index, text, finish, stream=True, role=choice.role)
