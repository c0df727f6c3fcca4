"""Cost of each filter on the real models and shipped data: `python -m bench.filters_bench`.

Per filter: `check()` on a 200-word prompt, and `scan()` per step of a 200-word answer
streamed 4 tokens at a time (tokens from the served model's tokenizer when bundled, else
~4-character pieces). Load time is recorded too. Results: bench/results/filters.json.
The machine is shared and noisy: the load average at the start and end is recorded with
the figures.

The model filters (embedding, classifier) run once per encoder backend (int8 ONNX Runtime,
PyTorch fp32), interleaved repetition by repetition so both see the same load, with the
encoder's text cache cleared before every timed call (cold figures); `check_20_words` and
`check_200_words` are one filter, `policy_pair_200_words` is the embedding and classifier
filters of one policy on the same prompt (the second one reuses the first one's encodings).
`encoder` is a micro-benchmark of the model alone: one sentence, and 32 windows of 32 words.
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
from filters.base import Filter, PolicyData, RequestPatcher, TextFilter
from filters.cache import cache_dir
from filters.encoder import Encoder
from filters.resources import Resources

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "policies" / "data"
OUT = ROOT / "bench" / "results" / "filters.json"
MODEL_FILTERS = ("embedding", "classifier")


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
    flt: Filter, prompt: str, answer: str, steps: list[str], repeat: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(flt, TextFilter):
        out |= _measure_text(flt, prompt, steps, repeat)
    if isinstance(flt, RequestPatcher):
        body: dict[str, Any] = {}
        t = time.perf_counter()
        for _ in range(repeat):
            body = {"logit_bias": {"1": 1.0}}
            flt.patch_request(body)
        out["patch_request_us"] = round((time.perf_counter() - t) / repeat * 1e6, 2)
    return out


def _measure_text(
    flt: TextFilter, prompt: str, steps: list[str], repeat: int
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
    return {
        "check_200_words": _percentiles(check_times),
        "scan_per_4_tokens": _percentiles(scan_times),
        "streams": streams,
        "steps_per_stream": len(steps),
    }


def _timed(fn: Callable[..., object], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def _check_all(flts: dict[str, TextFilter], text: str) -> None:
    for flt in flts.values():
        flt.check(text)


def measure_models(
    filters_by_backend: dict[str, dict[str, TextFilter]],
    encoders: dict[str, Encoder],
    prompts: dict[str, str],
    steps: list[str],
    repeat: int,
) -> dict[str, Any]:
    """Model filters per backend, interleaved; every timed call starts with a cold cache."""
    times: dict[str, dict[str, list[float]]] = {b: {} for b in filters_by_backend}

    def add(backend: str, key: str, seconds: float) -> None:
        times[backend].setdefault(key, []).append(seconds)

    for _ in range(repeat):
        for backend, flts in filters_by_backend.items():
            enc = encoders[backend]
            for name, flt in flts.items():
                for label, prompt in prompts.items():
                    enc.clear_cache()
                    add(backend, f"{name}.check_{label}", _timed(flt.check, prompt))
            if len(flts) == len(MODEL_FILTERS):
                enc.clear_cache()
                pair = _timed(_check_all, flts, prompts["200_words"])
                add(backend, "policy_pair_200_words", pair)
    for _ in range(max(1, repeat // 10)):
        for backend, flts in filters_by_backend.items():
            for name, flt in flts.items():
                encoders[backend].clear_cache()
                scanner = flt.open_stream()
                for k, text in enumerate(steps):
                    final = k == len(steps) - 1
                    add(
                        backend,
                        f"{name}.scan_per_4_tokens",
                        _timed(scanner.scan, text, final),
                    )
    out: dict[str, Any] = {}
    for backend, series in times.items():
        for key, xs in series.items():
            name, _, metric = key.partition(".")
            if not metric:
                out.setdefault("policy_pair_200_words", {})[backend] = _percentiles(xs)
                continue
            out.setdefault(name, {}).setdefault(metric, {})[backend] = _percentiles(xs)
    return out


def measure_encoder(
    configs: dict[str, tuple[Encoder, int]], sentence: str, windows: list[str], repeat: int
) -> dict[str, Any]:
    """Each config: an encoder and its thread count (torch's is process-wide: set per call)."""
    import torch

    times: dict[str, dict[str, list[float]]] = {c: {"one": [], "batch32": []} for c in configs}
    for _ in range(repeat):
        for label, (enc, threads) in configs.items():
            if enc.backend == "torch":
                torch.set_num_threads(threads)
            times[label]["one"].append(_timed(enc.embed_uncached, [sentence]))
            times[label]["batch32"].append(_timed(enc.embed_uncached, windows))
    return {
        "one_sentence": {c: _percentiles(t["one"]) for c, t in times.items()},
        "batch_32_windows_of_32_words": {c: _percentiles(t["batch32"]) for c, t in times.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="filter names")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--backends", nargs="+", default=["onnx", "torch"], help="encoders")
    parser.add_argument("--encoder-repeat", type=int, default=30)
    args = parser.parse_args(argv)

    tok_dir = cache_dir() / "models" / "smollm2-135m-instruct"
    resources = Resources(tokenizer_dir=tok_dir if (tok_dir / "tokenizer.json").exists() else None)
    tokenizer = resources.tokenizer if resources.tokenizer_dir else None

    # A 200-word prompt and answer that hit nothing, so every window and step is paid for.
    clean = (DATA / "harry-potter-near-misses.txt").read_text()
    clean = " ".join(clean.split()[300:]) + " " + clean
    prompt, answer = _words(clean, 200), _words(clean[len(clean) // 3 :], 200)
    steps = _steps(answer, tokenizer)
    prompts = {"20_words": _words(clean, 20), "200_words": prompt}
    datas = _policy_data()
    wanted = [n for n in MODEL_FILTERS if not args.only or n in args.only]
    encoders = {b: Encoder(backend=b) for b in args.backends} if wanted else {}
    by_backend: dict[str, dict[str, TextFilter]] = {}
    model_load_s: dict[str, dict[str, float]] = {}
    for backend, enc in encoders.items():
        res = Resources()
        res._encoder = enc
        for name in wanted:
            t = time.perf_counter()
            flt = filters.get(name).from_policy(datas[name], res, filters.get(name).Options())
            model_load_s.setdefault(name, {})[backend] = round(time.perf_counter() - t, 2)
            assert isinstance(flt, TextFilter)
            flt.check("warm up")
            by_backend.setdefault(backend, {})[name] = flt

    results: dict[str, Any] = {}
    started_load = os.getloadavg()[0]
    for name, data in datas.items():
        if (args.only and name not in args.only) or name in MODEL_FILTERS:
            continue
        if name == "logit_bias" and tokenizer is None:
            results[name] = {"skipped": "served model tokenizer not bundled"}
            continue
        cls: Callable[..., Filter] = filters.get(name).from_policy
        t = time.perf_counter()
        flt = cls(data, resources, filters.get(name).Options())
        load_s = time.perf_counter() - t
        if isinstance(flt, TextFilter):
            flt.check("warm up")
        results[name] = {"load_s": round(load_s, 2)} | measure(
            flt, prompt, answer, steps, args.repeat
        )
        print(name, json.dumps(results[name]))
    if by_backend:
        models = measure_models(by_backend, encoders, prompts, steps, args.repeat)
        for name in wanted:
            results[name] = {"load_s": model_load_s[name]} | models[name]
            print(name, json.dumps(results[name]))
        if "policy_pair_200_words" in models:
            results["policy_pair_200_words"] = models["policy_pair_200_words"]
        sentence = _words(clean, 12)
        ws = clean.split()
        windows = [" ".join(ws[k : k + 32]) for k in range(0, 32 * 8, 8)]
        configs = {
            f"{b}_{n}thread": (Encoder(backend=b, threads=n, cache_size=0), n)
            for b in args.backends
            for n in (1, 2)
        }
        results["encoder"] = measure_encoder(configs, sentence, windows, args.encoder_repeat)
        print("encoder", json.dumps(results["encoder"]))
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
        "encoder_threads": {"onnx": "LETHE_ENCODER_THREADS or 1", "torch": "2"},
        "filters": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
