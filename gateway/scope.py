"""One completion request from arrival to its last byte, and the stream response that ends it.

A route opens the scope with `async with`; everything the request holds is released when the
scope ends, once: the upstream answer a stream relays, the in-flight count, the request's
metrics. A whole answer ends with the `async with` block. A stream's response leaves the
route before its body is sent, so the route hands the scope over (`hand_over`) and the
`RelayResponse` ends it when its ASGI call ends: sent, cut by the client, or never started
because the client had already left (Starlette then never runs the body generator, so a
generator's `finally` cannot be what frees an upstream slot).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Mapping
from types import TracebackType

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.stages import UPSTREAM_PATHS, RequestContext, RequestStages
from gateway.streaming import StreamOutcome
from gateway.upstream import UpstreamError, UpstreamResponse

log = logging.getLogger("lethe")


class RequestScope:
    def __init__(
        self, ctx: RequestContext, stages: RequestStages, metrics: Metrics, model_label: str
    ) -> None:
        self.ctx = ctx
        self.stages = stages
        self._metrics = metrics
        self._route = UPSTREAM_PATHS[ctx.kind]
        self._model_label = model_label
        self._started = 0.0
        self._status = 500
        self._answer: UpstreamResponse | None = None
        self._outcome: StreamOutcome | None = None
        self._handed_over = False
        self._closed = False

    async def __aenter__(self) -> RequestScope:
        self._started = time.perf_counter()
        self._metrics.in_flight.inc()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, GatewayError):
            self._status = exc.status
        if isinstance(exc, UpstreamError):
            self._metrics.upstream_error(exc.reason)
            log.warning(
                "upstream error %s (%s) request=%s", exc.status, exc.reason, self.ctx.request_id
            )
        if exc is not None or not self._handed_over:
            await self.close()

    def relaying(self, answer: UpstreamResponse, outcome: StreamOutcome) -> None:
        """The upstream answer a stream relays: closed, and its outcome counted, at the end."""
        self._answer, self._outcome = answer, outcome

    def hand_over(self, response: Response) -> Response:
        """The route's response. A stream that carries this scope ends it after its last byte;
        any other response (a whole answer, a 499 for a client gone) ends with the block."""
        self._status = response.status_code
        self._handed_over = isinstance(response, RelayResponse) and response.scope is self
        return response

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._answer is not None:
                await self._answer.close()
        finally:
            outcome = self._outcome
            if outcome is not None:
                if outcome.error_reason is not None:
                    self._metrics.upstream_error(outcome.error_reason)
                if outcome.first_event_at is not None:
                    self._metrics.ttft.labels(route=self._route).observe(
                        outcome.first_event_at - outcome.opened_at
                    )
            self._metrics.in_flight.dec()
            self._metrics.requests.labels(
                route=self._route, model=self._model_label, status=str(self._status)
            ).inc()
            self._metrics.request_duration.labels(route=self._route).observe(
                time.perf_counter() - self._started
            )


class RelayResponse(StreamingResponse):
    """An event stream that ends its request's scope when its ASGI call ends."""

    def __init__(
        self,
        events: AsyncIterable[bytes],
        scope: RequestScope,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.scope = scope

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                # A generator left at a `yield` by a cut client: end it now, not at GC.
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                await self.scope.close()
