"""Running a real gateway (uvicorn on loopback) inside the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.settings import Settings
from stack.processes import free_port


class RunningGateway:
    def __init__(self, settings: Settings, server: uvicorn.Server, app: Any) -> None:
        self.settings = settings
        self.server = server
        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@contextmanager
def run_gateway(**overrides: Any) -> Iterator[RunningGateway]:
    overrides.setdefault("port", free_port())
    overrides.setdefault("reload_interval_s", 0)
    settings = Settings(**overrides)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        loop="asyncio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # surfaced below: a start-up failure must fail the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"gateway failed to start: {errors}")
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not start in time")
        time.sleep(0.02)
    try:
        yield RunningGateway(settings, server, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")
