"""Running the gateway under uvicorn."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from gateway.settings import Settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with every flag the user gave on top."""
    overrides: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return Settings(**overrides)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.lifecycle import DrainingServer, InFlight

    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = create_app(settings)
    in_flight = InFlight(app)
    config = uvicorn.Config(
        in_flight,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        # The drain (gateway.lifecycle) has already waited drain_seconds for in-flight work.
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
    )
    server = DrainingServer(config, app, in_flight, settings.drain_seconds)
    print(f"Lethe gateway on http://{settings.host}:{settings.port}/v1 -> {settings.upstream}")
    server.run()
    return 0
