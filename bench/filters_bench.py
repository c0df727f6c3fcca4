"""Cost of each filter on the real models and shipped data: `python -m bench.filters_bench`.

Per filter: `check()` on a 200-word prompt, and `scan()` per step of a 200-word answer
streamed 4 tokens at a time (tokens from the served model's tokenizer when bundled, else
~4-character pieces). Load time is recorded too. Results: bench/results/filters.json.
The machine is shared and noisy: the load average at the start and end is recorded with
the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import filters
from filters.base import Filter, PolicyData
from filters.resources import Resources

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "policies" / "data"
OUT = ROOT / "bench" / "results" / "filters.json"


def _lines(name: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in (DATA / name).read_text().splitlines() if s.strip())


def _words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def _percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return {
        "n": len(xs),
        "p50_ms": round(pick(0.50) * 1e3, 3),
        "p99_ms": round(pick(0.99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(xs) * 1e3, 3),
    }


def _steps(text: str, tokenizer: Any | None, tokens_per_step: int = 4) -> list[str]:
    if tokenizer is not None:
        ids = tokenizer.encode(text, add_special_tokens=False)
        cuts = [
            len(tokenizer.decode(ids[:k]))
            for k in range(tokens_per_step, len(ids), tokens_per_step)
        ]
    else:
        pieces = re.findall(r"\s*[^\s]{1,4}|\s+", text)
        cuts = [len("".join(pieces[:k])) for k in range(4, len(pieces), 4)]
    return [text[:c] for c in cuts] + [text]


def _policy_data() -> dict[str, PolicyData]:
    people = yaml.safe_load((DATA / "people.yaml").read_text())
    elena = {k: str(v) for k, v in people[0].items() if k != "bio"}
    hp = PolicyData(
        name="harry-potter",
        exemplars=_lines("harry-potter-exemplars.txt"),
        near_misses=_lines("harry-potter-near-misses.txt"),
        literals=("Harry Potter", "Hogwarts", "Dumbledore", "Voldemort"),
    )
    return {
        "verbatim": PolicyData(
            name="protected-work", corpus=(DATA / "protected-work.txt").read_text()
        ),
        "pii": PolicyData(name="elena", pii=elena),
        "embedding": hp,
        "classifier": hp,
        "logit_bias": hp,
    }


def measure(
    name: str, flt: Filter, prompt: str, answer: str, steps: list[str], repeat: int
) -> dict[str, Any]:
    check_times = []
    for _ in range(repeat):
        t = time.perf_counter()
        flt.check(prompt)
        check_times.append(time.perf_counter() - t)
    scan_times: list[float] = []
    streams = max(1, repeat // 10)
    for _ in range(streams):
        scanner = flt.open_stream()
        for k, text in enumerate(steps):
            t = time.perf_counter()
            res = scanner.scan(text, k == len(steps) - 1)
            scan_times.append(time.perf_counter() - t)
            if res.result.hit:
                break
    out: dict[str, Any] = {
        "check_200_words": _percentiles(check_times),
        "scan_per_4_tokens": _percentiles(scan_times),
        "streams": streams,
        "steps_per_stream": len(steps),
    }
    if name == "logit_bias":
        body: dict[str, Any] = {}
        t = time.perf_counter()
        for _ in range(repeat):
            body = {"logit_bias": {"1": 1.0}}
            flt.patch_request(body)
        out["patch_request_us"] = round((time.perf_counter() - t) / repeat * 1e6, 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="filter names")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    cache = Path(os.environ.get("LETHE_CACHE_DIR") or Path.home() / ".cache" / "lethe")
    tok_dir = cache / "models" / "smollm2-135m-instruct"
    resources = Resources(tokenizer_dir=tok_dir if (tok_dir / "tokenizer.json").exists() else None)
    tokenizer = resources.tokenizer if resources.tokenizer_dir else None

    # A 200-word prompt and answer that hit nothing, so every window and step is paid for.
    clean = (DATA / "harry-potter-near-misses.txt").read_text()
    clean = " ".join(clean.split()[300:]) + " " + clean
    prompt, answer = _words(clean, 200), _words(clean[len(clean) // 3 :], 200)
    steps = _steps(answer, tokenizer)

    results: dict[str, Any] = {}
    started_load = os.getloadavg()[0]
    for name, data in _policy_data().items():
        if args.only and name not in args.only:
            continue
        if name == "logit_bias" and tokenizer is None:
            results[name] = {"skipped": "served model tokenizer not bundled"}
            continue
        cls: Callable[..., Filter] = filters.get(name).from_policy
        t = time.perf_counter()
        flt = cls(data, resources, filters.get(name).Options())
        load_s = time.perf_counter() - t
        flt.check("warm up")
        results[name] = {"load_s": round(load_s, 2)} | measure(
            name, flt, prompt, answer, steps, args.repeat
        )
        print(name, json.dumps(results[name]))
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": round(started_load, 2),
            "loadavg_end": round(os.getloadavg()[0], 2),
        },
        "prompt_words": len(prompt.split()),
        "answer_words": len(answer.split()),
        "step": "4 tokens" if tokenizer is not None else "4 pieces of <=4 chars",
        "filters": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
