"""The cascade against the MiniLM-only filters: `python -m bench.cascade_quality`.

Builds the shipped harry-potter policy's windowed filters (embedding on input and output,
classifier on input) twice, with the static screen (the default) and without it, on the real
models, and measures:
- calibration: each filter's screen threshold and what it rests on;
- recall kept: on held-out texts the policy does not hold (the evaluation's generated attack
  prompts for the concept target, the public attack set's harry-potter items, and the
  held-back paraphrases of tests/filters/test_cascade.py), which texts each filter flags with
  and without the screen; "lost" are texts only the MiniLM-only filter flags (the goal: 0);
- precision: the same on the policy's near-misses and the evaluation's benign questions;
- screen selectivity: the share of benign windows (bench/benign.py prompts) the screen sends
  to MiniLM;
- cost: `check()` of the policy's input filters on benign prompts of 200, 1,500 and 4,000
  words, cascade and MiniLM-only, cold encoder cache, with the load average.
Results: bench/results/cascade.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from bench.benign import benign_prompt
from filters.base import PolicyData, TextFilter
from filters.classifier import Classifier
from filters.embedding import Embedding
from filters.resources import Resources
from filters.windows import WindowedFilter

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "policies" / "data"
OUT = ROOT / "bench" / "results" / "cascade.json"


def _lines(name: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in (DATA / name).read_text().splitlines() if s.strip())


def policy_data() -> PolicyData:
    return PolicyData(
        name="harry-potter",
        exemplars=_lines("harry-potter-exemplars.txt"),
        near_misses=_lines("harry-potter-near-misses.txt"),
    )


def build(resources: Resources, screen: bool, margin: float = 0.05) -> dict[str, WindowedFilter]:
    data = policy_data()
    emb = Embedding.from_policy(
        data, resources, Embedding.Options(threshold=0.45, screen=screen, screen_margin=margin)
    )
    clf = Classifier.from_policy(
        data, resources, Classifier.Options(screen=screen, screen_margin=margin)
    )
    assert isinstance(emb, WindowedFilter) and isinstance(clf, WindowedFilter)
    return {"embedding": emb, "classifier": clf}


def held_out() -> dict[str, list[str]]:
    from evaluation import attacks, targets

    probes = attacks.generate(targets.concept_target())
    attack_set = yaml.safe_load((ROOT / "tests" / "attacks" / "attack_set.yaml").read_text())
    from tests.filters.test_cascade import HELD_BACK

    return {
        "evaluation_probes": sorted({p.text() for p in probes}),
        "attack_set": [
            "\n".join(m["content"] for m in a["messages"])
            for a in attack_set
            if a["policy"] == "harry-potter" and a["expect"] == "suppress"
        ],
        "held_back_paraphrases": list(HELD_BACK),
    }


def benign_sets() -> dict[str, list[str]]:
    from evaluation import targets

    attack_set = yaml.safe_load((ROOT / "tests" / "attacks" / "attack_set.yaml").read_text())
    return {
        "near_misses": list(_lines("harry-potter-near-misses.txt")),
        "attack_set_allowed": [
            "\n".join(m["content"] for m in a["messages"])
            for a in attack_set
            if a["expect"] == "allow"
        ],
        "general_questions": [q.question for q in targets.utility_set().general_qa],
    }


def compare(
    cascade: dict[str, TextFilter], plain: dict[str, TextFilter], texts: list[str]
) -> dict:
    out: dict[str, Any] = {}
    for name in cascade:
        with_screen = [cascade[name].check(t).hit for t in texts]
        without = [plain[name].check(t).hit for t in texts]
        out[name] = {
            "texts": len(texts),
            "flagged_minilm_only": sum(without),
            "flagged_cascade": sum(with_screen),
            "lost": [t for t, a, b in zip(texts, with_screen, without, strict=True) if b and not a],
            "gained": sum(a and not b for a, b in zip(with_screen, without, strict=True)),
        }
    either_c = [any(cascade[n].check(t).hit for n in cascade) for t in texts]
    either_p = [any(plain[n].check(t).hit for n in plain) for t in texts]
    out["policy_input"] = {
        "texts": len(texts),
        "flagged_minilm_only": sum(either_p),
        "flagged_cascade": sum(either_c),
        "lost": sum(b and not a for a, b in zip(either_c, either_p, strict=True)),
    }
    return out


def selectivity(filters: dict[str, WindowedFilter], prompts: list[str]) -> dict[str, Any]:
    out = {}
    for name, flt in filters.items():
        assert flt.screen is not None and flt.calibration is not None
        total = passed = 0
        for text in prompts:
            spans = flt.spans(text)
            total += len(spans)
            passed += sum(flt.screen.passes(text, spans))
        out[name] = {"spans": total, "sent_to_minilm": passed, "share": passed / max(total, 1)}
    return out


def timing(resources: Resources, filters: dict[str, WindowedFilter], words: int,
           reps: int) -> dict[str, Any]:
    times = []
    for seed in range(reps):
        text = benign_prompt(words, seed=10_000 + seed)
        resources.encoder.clear_cache()
        started = time.perf_counter()
        for flt in filters.values():
            flt.check(text)
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "reps": reps,
        "p50_ms": round(1e3 * statistics.median(times), 2),
        "max_ms": round(1e3 * times[-1], 2),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def stream_chunks(answers: int, tokens: int = 500) -> dict[str, Any]:
    """Output-stage scan cost per streamed chunk with the shipped policies (every output
    filter's scanner, one after another as the gateway's guard runs them), over `answers`
    benign answers of `tokens` tokens in pieces of about one token (4 characters)."""
    from filters.base import TextFilter, run_steps
    from gateway.policy import load_directory
    from gateway.policy.loading import build_policy_set
    from tests.filters.streaming import pieces

    tok_dir = Path.home() / ".cache" / "lethe" / "models" / "smollm2-135m-instruct"
    resources = Resources(tokenizer_dir=tok_dir if tok_dir.is_dir() else None)
    policy_set = build_policy_set(load_directory(ROOT / "policies"), resources,
                                  max_holdback_chars=1024)
    output = [b.filter for p in policy_set.policies for b in p.filters
              if "output" in b.stages and isinstance(b.filter, TextFilter)]
    per_chunk: list[float] = []
    for a in range(answers):
        text = " ".join(benign_prompt(tokens, seed=70_000 + a).split()[: int(tokens * 0.75)])
        scanners = [f.open_stream() for f in output]
        so_far = ""
        parts = pieces(text)
        for k, piece in enumerate(parts):
            so_far += piece
            started = time.perf_counter()
            for sc in scanners:
                run_steps(sc.scan_steps(so_far, k == len(parts) - 1))
            per_chunk.append(time.perf_counter() - started)
    per_chunk.sort()
    return {
        "filters": [f.name for f in output],
        "answers": answers, "chunks": len(per_chunk),
        "p50_ms": round(1e3 * statistics.median(per_chunk), 3),
        "p99_ms": round(1e3 * per_chunk[int(0.99 * (len(per_chunk) - 1))], 3),
        "max_ms": round(1e3 * per_chunk[-1], 3),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--benign-prompts", type=int, default=20)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--plain-reps", type=int, default=3, help="reps of the slow MiniLM-only")
    p.add_argument("--margins", type=float, nargs="+", default=[0.05],
                   help="screen margins to compare (the first one is timed)")
    p.add_argument("--stream-only", type=int, default=0, metavar="ANSWERS",
                   help="only the output scan cost per chunk over this many 500-token answers")
    args = p.parse_args(argv)
    if args.stream_only:
        figures = stream_chunks(args.stream_only)
        print(json.dumps(figures))
        out = args.out.with_name("stream_chunks.json")
        out.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    load_start = [round(x, 2) for x in os.getloadavg()]
    resources = Resources()
    plain = build(resources, screen=False)
    held, benign = held_out(), benign_sets()
    prompts = [benign_prompt(1500, s) for s in range(args.benign_prompts)]
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "load_avg_start": load_start,
        "margins": {},
        "check_ms": {},
    }
    for margin in args.margins:
        cascade = build(resources, screen=True, margin=margin)
        result["margins"][str(margin)] = {
            "calibration": {n: f.calibration.__dict__ for n, f in cascade.items()
                            if f.calibration},
            "recall": {k: compare(cascade, plain, v) for k, v in held.items()},  # type: ignore[arg-type]
            "false_positives": {k: compare(cascade, plain, v) for k, v in benign.items()},  # type: ignore[arg-type]
            "selectivity_1500_words": selectivity(cascade, prompts),
        }
        summary = result["margins"][str(margin)]
        print(f"margin {margin}:", json.dumps(summary["selectivity_1500_words"]))
        for group in ("recall", "false_positives"):
            for name, res in summary[group].items():
                print(" ", group, name, {k: {kk: vv if kk != "lost" or isinstance(vv, int)
                                             else len(vv) for kk, vv in v.items()}
                                         for k, v in res.items()}, flush=True)
    timed = build(resources, screen=True, margin=args.margins[0])
    input_cascade = {"embedding": timed["embedding"], "classifier": timed["classifier"]}
    input_plain = {"embedding": plain["embedding"], "classifier": plain["classifier"]}
    for words in (200, 1500, 4000):
        result["check_ms"][f"{words}_words"] = {
            "cascade": timing(resources, input_cascade, words, args.reps),
            "minilm_only": timing(resources, input_plain, words, args.plain_reps),
        }
        print(words, result["check_ms"][f"{words}_words"], flush=True)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
