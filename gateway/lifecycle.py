"""Graceful drain on SIGTERM: readiness goes false, new completions get 503, in-flight finish.

uvicorn's own shutdown closes the listening socket first, so a readiness probe or a late client
would see a refused connection instead of an answer. The drain runs before it: the socket stays
open while `runtime.draining` refuses new work, and uvicorn is told to exit only once the
requests in flight (streams included, counted to their last byte) are done or `drain_seconds`
has passed. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("lethe")

#: Probes and scrapes are not work to wait for: they keep coming while the pod drains.
_NOT_COUNTED = frozenset({"/healthz", "/readyz", "/metrics"})
_POLL_S = 0.05


class InFlight:
    """ASGI middleware counting HTTP requests until their response is fully sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _NOT_COUNTED:
            await self.app(scope, receive, send)
            return
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1


async def drain(in_flight: InFlight, runtime: Any, grace_s: float) -> bool:
    """Refuse new work and wait for what is in flight; True when it all finished in time."""
    runtime.draining = True
    deadline = time.monotonic() + grace_s
    while in_flight.count > 0 and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
    return in_flight.count == 0


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM/SIGINT drains before the normal shutdown."""

    def __init__(self, config: uvicorn.Config, app: Any, in_flight: InFlight, grace_s: float):
        super().__init__(config)
        self._app = app
        self._in_flight = in_flight
        self._grace_s = grace_s
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = getattr(self._app.state, "runtime", None)
        if self._draining or runtime is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        runtime.draining = True
        # A signal handler runs between two steps of the loop: schedule, don't await.
        self._draining = True
        loop.call_soon_threadsafe(self._start_drain, runtime)

    def _start_drain(self, runtime: Any) -> None:
        self._drain_task = asyncio.ensure_future(self._drain(runtime))

    async def _drain(self, runtime: Any) -> None:
        started = time.monotonic()
        log.warning("draining: readiness false, %d requests in flight, grace %.0fs",
                    self._in_flight.count, self._grace_s)
        finished = await drain(self._in_flight, runtime, self._grace_s)
        log.warning(
            "drained in %.1fs%s", time.monotonic() - started,
            "" if finished else f"; {self._in_flight.count} requests still open, closing them",
        )
        self.should_exit = True
