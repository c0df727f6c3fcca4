"""`lethe eval`: run every arm against the attacks and metrics, write the report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from evaluation.arms import Arm, ArmConfigError, LocalStack, StackPlan, load_arms
from evaluation.attacks import ATTACKS
from evaluation.report import headline_rows, markdown_table, write_report
from evaluation.runner import EvalSettings, evaluate_arm
from evaluation.targets import default_targets, utility_set


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lethe eval", description="Suppression versus unlearning, side by side, over HTTP.")
    parser.add_argument("--out", type=Path, default=Path("eval-out"), help="report directory")
    parser.add_argument("--quick", action="store_true",
                        help="one prompt per attack and small samples (a few minutes)")
    parser.add_argument("--stack", choices=("local", "none"), default="local",
                        help="local: start engines and gateways here; none: arms from --config")
    parser.add_argument("--config", type=Path, help="YAML list of arms (with --stack none)")
    parser.add_argument("--arms", help="comma-separated arm names to run (default: all)")
    parser.add_argument("--targets", help="comma-separated policies (default: all three)")
    parser.add_argument("--techniques", help="comma-separated attacks (default: all); "
                        f"known: {', '.join(ATTACKS)}")
    parser.add_argument("--concurrency", type=int, default=None,
                        help=f"requests in flight per arm (default: {EvalSettings.concurrency})")
    parser.add_argument("--per-technique", type=int, default=None,
                        help="attack prompts per technique and target (default: "
                        f"{EvalSettings.per_technique}; quick: "
                        f"{EvalSettings.quick().per_technique})")
    parser.add_argument("--engine-threads", default=None,
                        help="CPU cores for each vLLM engine, e.g. 0-1 (sets "
                        "VLLM_CPU_OMP_THREADS_BIND and OMP_NUM_THREADS; default: vLLM's own "
                        "choice, one core on CPU)")
    parser.add_argument("--target-model", type=Path, default=None,
                        help="model for the target phase (default: <cache>/models/lethe-target; "
                        "'base' serves those arms from the base model, said in the report)")
    parser.add_argument("--removal", type=Path, default=None,
                        help="rows of `python -m evaluation.removal` (attacks on the adapters' "
                        "weights) to report in their own table")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _arm_source(args: argparse.Namespace, policies: list[str]) -> tuple[Iterator[Arm], list[str]]:
    wanted = [a.strip() for a in args.arms.split(",")] if args.arms else None
    if args.stack == "none":
        if args.config is None:
            raise ArmConfigError("--stack none needs --config FILE listing the arms")
        arms = [a for a in load_arms(args.config) if wanted is None or a.name in wanted]
        return iter(arms), [a.name for a in arms]
    env: dict[str, str] = {}
    if args.engine_threads:
        env = {"VLLM_CPU_OMP_THREADS_BIND": args.engine_threads,
               "OMP_NUM_THREADS": str(core_count(args.engine_threads))}
    target_model = args.target_model
    if target_model is not None and str(target_model) == "base":
        from stack.engine import resolve_model

        target_model = resolve_model("base")
    stack = LocalStack(StackPlan(policies, wanted, engine_env=env, target_model=target_model),
                       args.out / "logs")
    return stack.arms(), stack.arm_names()


def core_count(spec: str) -> int:
    """Cores named by a CPU list such as '0-1' or '0,2-3'."""
    count = 0
    for part in spec.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv or []))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = EvalSettings.quick() if args.quick else EvalSettings()
    overrides: dict[str, Any] = {}
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    if args.per_technique:
        overrides["per_technique"] = args.per_technique
    if args.techniques:
        techniques = tuple(t.strip() for t in args.techniques.split(","))
        unknown = [t for t in techniques if t not in ATTACKS]
        if unknown:
            print(f"error: unknown attacks {unknown}; known: {', '.join(ATTACKS)}",
                  file=sys.stderr)
            return 2
        overrides["techniques"] = techniques
    settings = replace(settings, **overrides)
    targets = default_targets()
    if args.targets:
        chosen = {t.strip() for t in args.targets.split(",")}
        targets = [t for t in targets if t.policy in chosen]
        if not targets:
            print(f"error: no known target among {sorted(chosen)}", file=sys.stderr)
            return 2
    policies = [t.policy for t in targets]
    try:
        arms, names = _arm_source(args, policies)
    except (ArmConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full", "stack": args.stack,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "targets": policies, "arms_planned": names, "settings": asdict(settings),
        "duration_s": 0.0, "command": "lethe eval " + " ".join(argv or []),
        "engine_threads": args.engine_threads or "vllm default (one core)", "notes": [],
    }
    if args.target_model is not None:
        meta["target_model"] = str(args.target_model)
        meta["notes"].append(f"The target phase (target, suppress, decode, unlearn/both arms) "
                             f"was served by {args.target_model}, not the memorized target.")
    results: dict[str, Any] = {"meta": meta, "arms": []}
    if args.removal is not None:
        results["removal_attacks"] = json.loads(args.removal.read_text())
    bar = tqdm(total=0, unit="req", disable=args.no_progress, dynamic_ncols=True)

    def grow(n: int) -> None:
        bar.total = (bar.total or 0) + n
        bar.refresh()

    utility = utility_set()
    try:
        for arm in arms:
            bar.set_description(f"arm {arm.name}")
            arm_started = time.time()
            result = evaluate_arm(arm, targets, utility, settings, progress=bar.update,
                                  on_plan=grow)
            result["seconds"] = round(time.time() - arm_started, 1)
            results["arms"].append(result)
            meta["duration_s"] = time.time() - started
            (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
            bar.write(f"{arm.name}: done in {result['seconds']:.0f} s"
                      + (f" (unavailable: {result['unavailable']})"
                         if result.get("unavailable") else ""))
    except KeyboardInterrupt:
        bar.write("interrupted: writing the report for the arms finished so far")
    finally:
        bar.close()
    meta["duration_s"] = time.time() - started
    if not results["arms"]:
        print("error: no arm was evaluated", file=sys.stderr)
        return 1
    paths = write_report(results, args.out)
    header, rows = headline_rows(results)
    print(markdown_table(header, rows))
    print(f"\nreport: {paths['html']} ({paths['markdown']}, {paths['results']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
