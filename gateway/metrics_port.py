"""/metrics on a port of its own (LETHE_METRICS_PORT), apart from the clients' port, so a
NetworkPolicy can give it to the monitoring namespace alone."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> Callable[[], None]:
    """Serve `registry` on host:port from a daemon thread; returns the function that stops it.

    prometheus_client's own threaded server: a scrape never waits for the event loop, and the
    collectors it reads are thread-safe."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
