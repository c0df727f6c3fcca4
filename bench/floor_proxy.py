"""The floor: a minimal Python pass-through proxy (Starlette + httpx, bytes forwarded, no parsing).

It runs under the same server settings as the gateway (uvicorn, uvloop, httptools, one shared
keep-alive client), so the difference between the two is the gateway's own work.

    python -m bench.floor_proxy --upstream http://127.0.0.1:8101 --port 8102
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def create_app(upstream: str) -> Starlette:
    client = httpx.AsyncClient(
        base_url=upstream.rstrip("/"),
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )

    async def forward(request: Request) -> Response:
        headers = {}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        outgoing = client.build_request(
            request.method, request.url.path, content=await request.body(), headers=headers
        )
        response = await client.send(outgoing, stream=True)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            background=BackgroundTask(response.aclose),
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST"])], lifespan=lifespan
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor_proxy", description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        create_app(args.upstream), host=args.host, port=args.port, loop="uvloop",
        http="httptools", access_log=False, log_level="warning", timeout_keep_alive=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
