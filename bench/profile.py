"""Profile the gateway on its hot path: py-spy samples it while the bench client drives load.

    python -m bench.profile --seconds 15 [--stream] [--policies policies] [--out DIR]

Writes a collapsed-stack file (flamegraph input) and prints the functions with the most
samples, inclusive and self, so the hot path is visible without a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.client import Connection, host_port
from bench.load import Scenario, configure_mock
from stack.processes import Server, free_port, python_module

ROOT = Path(__file__).resolve().parent.parent


async def _drive(url: str, scenario: Scenario, seconds: float) -> int:
    host, port = host_port(url)
    conns = [Connection(host, port) for _ in range(scenario.concurrency)]
    body = scenario.body()
    deadline = time.monotonic() + seconds
    count = 0

    async def worker(conn: Connection) -> None:
        nonlocal count
        while time.monotonic() < deadline:
            await conn.request(scenario.path, body, stream=scenario.stream, timeout=30)
            count += 1

    await asyncio.gather(*(worker(c) for c in conns))
    for conn in conns:
        conn.close()
    return count


def top(collapsed: Path, limit: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    out = [f"{total} samples", "", "inclusive:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in inclusive.most_common(limit)]
    out += ["", "self:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(limit)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--policies", type=Path, default=None)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lethe-profile")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    mock = Server("mock", python_module("bench.mock_upstream", "--port", str(free_port())),
                  port=0, health_path="/health", log_path=args.out / "mock.log", cwd=ROOT)
    mock.port = int(mock.command[-1])
    gw_port = free_port()
    gw_args = ["serve", "--upstream", mock.url, "--port", str(gw_port)]
    if args.policies is not None:
        gw_args += ["--policies", str(args.policies)]
    gateway = Server("gateway", python_module("lethe_cli", *gw_args), port=gw_port,
                     health_path="/readyz", log_path=args.out / "gateway.log", cwd=ROOT,
                     env={"LETHE_LOG_LEVEL": "warning", "LETHE_RELOAD_INTERVAL_S": "0",
                          "LETHE_AUDIT_LOG": str(args.out / "audit.jsonl")})
    collapsed = args.out / f"gateway-{'stream' if args.stream else 'json'}.collapsed"
    spy: subprocess.Popen[bytes] | None = None
    try:
        mock.start().wait_ready(30)
        gateway.start().wait_ready(600)
        scenario = Scenario("profile", ("gateway",), stream=args.stream,
                            concurrency=args.concurrency, requests=0, tokens=args.tokens)
        uvloop.run(configure_mock(mock.url, scenario))
        uvloop.run(_drive(gateway.url, scenario, 2))
        assert gateway.pid is not None
        spy = subprocess.Popen([py_spy, "record", "--pid", str(gateway.pid), "--rate",
                                str(args.rate), "--format", "raw", "--nonblocking",
                                "--output", str(collapsed)])
        time.sleep(1)
        count = uvloop.run(_drive(gateway.url, scenario, args.seconds))
        print(f"{count} requests in {args.seconds:.0f} s")
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        gateway.stop()
        mock.stop()
    print(top(collapsed))
    print(f"collapsed stacks: {collapsed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
