"""How much an upstream HTTP client costs per request: `python -m bench.upstream_clients`.

Sequential requests (interleaved, per request) against `bench.mock_upstream` on loopback, on
uvloop as the gateway runs: httpx and aiohttp used bare, the gateway's `Upstream` (slots,
timeouts and all), and with `--old FILE` the `Upstream` of another version of
gateway/upstream.py (e.g. `git show 961cd6d:gateway/upstream.py > /tmp/old_upstream.py`).
Prints the p50 / p90 time per request, streamed and not.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import uvloop

from gateway.upstream import Upstream
from stack.processes import free_port

PATH = "/v1/chat/completions"
BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
Call = Callable[[bool], Awaitable[None]]


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("old_upstream", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _upstream_call(upstream: Any) -> Call:
    async def call(stream: bool) -> None:
        response = await upstream.open(PATH, {**BODY, "stream": stream})
        try:
            async for _ in response.aiter_raw():
                pass
        finally:
            await response.close()

    return call


async def _run(url: str, requests: int, old: Path | None) -> None:
    hx = httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=256))
    aio = aiohttp.ClientSession()
    current = Upstream(url)
    calls: dict[str, Call] = {}

    async def httpx_call(stream: bool) -> None:
        request = hx.build_request("POST", PATH, content=orjson.dumps({**BODY, "stream": stream}),
                                   headers={"content-type": "application/json"})
        response = await hx.send(request, stream=True)
        async for _ in response.aiter_raw():
            pass
        await response.aclose()

    async def aiohttp_call(stream: bool) -> None:
        async with aio.post(url + PATH, data=orjson.dumps({**BODY, "stream": stream}),
                            headers={"content-type": "application/json"}) as response:
            async for _ in response.content.iter_any():
                pass

    calls["httpx (bare)"] = httpx_call
    calls["aiohttp (bare)"] = aiohttp_call
    calls["Upstream (this tree)"] = _upstream_call(current)
    previous = _load(old).Upstream(url) if old is not None else None
    if previous is not None:
        calls[f"Upstream ({old})"] = _upstream_call(previous)
    try:
        for stream in (False, True):
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(50):
                for call in calls.values():
                    await call(stream)
            for _ in range(requests):
                for name, call in calls.items():
                    started = time.perf_counter()
                    await call(stream)
                    times[name].append(time.perf_counter() - started)
            for name, values in times.items():
                values.sort()
                print(f"{'stream' if stream else 'whole '} {name:40s} "
                      f"p50 {values[len(values) // 2] * 1e3:.3f} ms  "
                      f"p90 {values[int(len(values) * 0.9)] * 1e3:.3f} ms")
    finally:
        await hx.aclose()
        await aio.close()
        await current.aclose()
        if previous is not None:
            await previous.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--old", type=Path, default=None, help="another gateway/upstream.py")
    args = parser.parse_args()
    port = free_port()
    mock = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", str(port),
                             "--tokens", "32"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        uvloop.run(_run(f"http://127.0.0.1:{port}", args.requests, args.old))
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
