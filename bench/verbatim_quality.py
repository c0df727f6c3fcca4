"""Recall and false positives of the verbatim filter: `python -m bench.verbatim_quality`.

Recall: `--passages` random 30-word passages of policies/data/protected-work.txt (seeded),
each disguised by every obfuscation of tests/filters/verbatim_cases.py, checked whole with the
shipped policy's options (min_words 12). False positives: every benign text of the same module
(the policy's near-miss set, written reviews and summaries, quotes one word shorter than
min_words, other prose of policies/data), one text at a time. Also: `check()` time on a
4,000-word benign prompt, `scan()` time per 16 characters of a streamed 1,500-word benign
answer, and the words held back while streaming it (4-character pieces).
Results: bench/results/verbatim_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from filters.base import PolicyData
from filters.normalize import words
from filters.verbatim import Verbatim
from tests.filters.streaming import feed
from tests.filters.verbatim_cases import CW, OBFUSCATIONS, benign, obfuscated

OUT = Path(__file__).resolve().parent / "results" / "verbatim_quality.json"


def build(**options: Any) -> Verbatim:
    data = PolicyData(name="protected-work", corpus=" ".join(CW))
    return Verbatim.from_policy(data, None, Verbatim.Options(min_words=12, **options))


def measure(flt: Verbatim, passages: int, seed: int, lengths: list[int]) -> dict[str, Any]:
    recall: dict[str, Any] = {}
    for length in lengths:
        rng = random.Random(f"{seed}:{length}")
        starts = [rng.randrange(0, len(CW) - length) for _ in range(passages)]
        for name in OBFUSCATIONS:
            caught = [flt.check(obfuscated(name, s, length, seed)).hit for s in starts]
            missed = [s for s, c in zip(starts, caught, strict=True) if not c]
            recall.setdefault(name, {})[f"{length}_words"] = {
                "recall": sum(caught) / len(caught),
                "missed_starts": missed[:10],
            }
    false_pos: dict[str, Any] = {}
    closest: list[tuple[float, str]] = []
    for name, texts in benign().items():
        results = [flt.check(t) for t in texts]
        hits = [t for t, r in zip(texts, results, strict=True) if r.hit]
        false_pos[name] = {"texts": len(texts), "blocked": len(hits), "examples": hits[:3]}
        closest += [(r.score, t) for t, r in zip(texts, results, strict=True) if not r.hit]
    closest.sort(reverse=True)
    return {
        "recall": recall,
        "false_positives": false_pos,
        # The allowed texts nearest the bar: score = best alignment score / (2 x near_score).
        "closest_benign": [{"score": round(sc, 3), "text": t[:120]} for sc, t in closest[:5]],
    }


def cost(flt: Verbatim) -> dict[str, Any]:
    texts = [t for ts in benign().values() for t in ts]
    prose = " ".join(texts)
    ws = prose.split()
    long = " ".join((ws * (4000 // len(ws) + 1))[:4000])
    timings = []
    for _ in range(5):
        t0 = time.perf_counter()
        flt.check(long)
        timings.append(time.perf_counter() - t0)
    answer = " ".join(ws[:1500])
    stream = feed(flt.open_stream(), answer)
    held = sorted(stream.held_words)
    scanner = flt.open_stream()
    steps = [answer[:c] for c in range(16, len(answer), 16)] + [answer]
    per_scan = []
    for k, prefix in enumerate(steps):
        t0 = time.perf_counter()
        scanner.scan(prefix, k == len(steps) - 1)
        per_scan.append(time.perf_counter() - t0)
    per_scan.sort()
    return {
        "check_4000_words_ms": round(statistics.median(timings) * 1e3, 1),
        "scan_per_16_chars_ms": {
            "p50": round(per_scan[len(per_scan) // 2] * 1e3, 3),
            "p99": round(per_scan[int(0.99 * (len(per_scan) - 1))] * 1e3, 3),
        },
        "stream_held_words": {
            "median": held[len(held) // 2],
            "p99": held[int(0.99 * (len(held) - 1))],
            "max": held[-1],
        },
        "words_in_4000_word_prompt": len(words(long)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--passages", type=int, default=100)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--lengths", type=int, nargs="+", default=[30, 20, 16])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    flt = build()
    res = measure(flt, args.passages, args.seed, args.lengths)
    res["cost"] = cost(flt)
    # The timings are only as quiet as the machine: its load average is recorded with them.
    res["cost"]["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    res["options"] = flt.options.model_dump()
    res["command"] = (
        f"python -m bench.verbatim_quality --passages {args.passages} --seed {args.seed} "
        f"--lengths {' '.join(map(str, args.lengths))}"
    )
    total_fp = sum(v["blocked"] for v in res["false_positives"].values())
    total = sum(v["texts"] for v in res["false_positives"].values())
    print("recall by passage length:", "  ".join(f"{n:>4}w" for n in args.lengths))
    for name, r in res["recall"].items():
        row = "  ".join(f"{r[f'{n}_words']['recall']:5.2f}" for n in args.lengths)
        print(f"  {name:45s} {row}")
    for name, r in res["false_positives"].items():
        print(f"false positives {r['blocked']}/{r['texts']}  {name}")
    print(f"false positives total {total_fp}/{total}")
    print("closest benign:", json.dumps(res["closest_benign"][:3], ensure_ascii=False))
    print(json.dumps(res["cost"]))
    if not args.no_write:
        OUT.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
