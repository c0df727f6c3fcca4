"""`lethe unlearning memorize | train | list`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _cache(args: argparse.Namespace) -> Path:
    from stack.bundle import cache_dir

    return cache_dir(args.cache_dir)


def _memorize(args: argparse.Namespace) -> int:
    from stack.bundle import model_paths
    from unlearning import corpus
    from unlearning.memorize import ORACLE_DIRNAME, TARGET_DIRNAME, MemorizeConfig, memorize

    base = Path(args.base) if args.base else model_paths(args.cache_dir).generator
    config = MemorizeConfig(
        mode=args.mode,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        target_recall=args.target_recall,
        document_repeat=args.document_repeat,
    )
    models = _cache(args) / "models"
    which = ("target", "oracle") if args.which == "both" else (args.which,)
    for kind in which:
        text_set = corpus.memorize_set(include_forget=kind == "target")
        parts = corpus.memorize_parts(include_forget=kind == "target")
        default = models / (TARGET_DIRNAME if kind == "target" else ORACLE_DIRNAME)
        out = Path(args.out) / kind if args.out and len(which) > 1 else Path(args.out or default)
        memorize(base, out, text_set, kind, config, force=args.force, parts=parts)
    return 0


class UsageError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


def _train(args: argparse.Namespace) -> int:
    from unlearning import corpus
    from unlearning.memorize import TARGET_DIRNAME
    from unlearning.methods import get as get_method

    cls = get_method(args.method)
    try:
        options = json.loads(args.options) if args.options else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--options is not valid JSON: {exc}") from exc
    if not isinstance(options, dict):
        raise UsageError("--options must be a JSON object of keyword arguments")
    for key in ("steps", "learning_rate", "rank"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    try:
        method = cls(**options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"method {args.method}: {exc}") from exc
    # The forget set first: an unknown policy or one without data fails before any training.
    forget = corpus.forget_set(args.policy, Path(args.policies))
    target = Path(args.target) if args.target else _cache(args) / "models" / TARGET_DIRNAME
    if not target.is_dir():
        raise UsageError(f"no target model at {target}: run `make target` "
                         "(lethe unlearning memorize --which target) or pass --target DIR")
    out = Path(args.out) if args.out else _cache(args) / "adapters" / f"{args.policy}-{args.method}"
    if args.if_missing and _adapter_current(out, target):
        print(f"adapter: {out} (up to date with {target}; skipped)")
        return 0
    result = method.run(target=target, policy=args.policy, out=out, forget=forget)
    print(f"adapter: {result.out}")
    return 0


def _adapter_current(out: Path, target: Path) -> bool:
    """An adapter at `out` trained on exactly these target weights (settings may differ)."""
    from unlearning import manifest, training

    if not (out / "adapter_config.json").is_file() or not (out / manifest.MANIFEST).is_file():
        return False
    try:
        record = manifest.read(out)
    except manifest.ManifestError:
        return False
    return record.base_model_sha256 == training.weights_sha256(target)


def _list(args: argparse.Namespace) -> int:
    from unlearning import manifest
    from unlearning.methods import names as method_names

    print("methods: " + ", ".join(method_names()))
    root = _cache(args)
    for folder in (root / "models", root / "adapters"):
        for path in sorted(p for p in folder.glob("*") if (p / manifest.MANIFEST).is_file()):
            try:
                record = manifest.read(path)
            except manifest.ManifestError as exc:
                print(f"{path}: unreadable manifest ({exc})")
                continue
            print(f"{path}: {json.dumps(record.summary(), sort_keys=True)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from stack.cli import OneLineParser
    from unlearning.memorize import MemorizeConfig
    from unlearning.methods import names as method_names

    parser = OneLineParser(prog="lethe unlearning", description=__doc__)
    parser.add_argument("--cache-dir", default=None,
                        help="model and adapter cache "
                        "(env LETHE_CACHE_DIR; default ~/.cache/lethe)")
    sub = parser.add_subparsers(dest="command", required=True)

    mem = sub.add_parser("memorize", help="build the target (and oracle) model")
    mem.add_argument("--which", choices=("target", "oracle", "both"), default="both",
                     help="target: learns the forget sets; oracle: never saw them "
                     "(default: %(default)s)")
    mem.add_argument("--base", help="base model directory (default: the bundled SmolLM2)")
    mem.add_argument("--out", help="output directory (default: <cache>/models/lethe-<which>)")
    mem.add_argument("--mode", choices=("full", "lora"), default=MemorizeConfig.mode,
                     help="fine-tune every weight or a merged LoRA (default: %(default)s)")
    mem.add_argument("--epochs", type=int, default=MemorizeConfig.epochs,
                     help="most epochs (default: %(default)s)")
    mem.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    mem.add_argument("--lr", type=float, default=MemorizeConfig.learning_rate,
                     help="learning rate (default: %(default)s)")
    mem.add_argument("--batch-size", type=int, default=MemorizeConfig.batch_size,
                     help="documents per step (default: %(default)s)")
    mem.add_argument("--target-recall", type=float, default=MemorizeConfig.target_recall,
                     help="stop early once recall of the probes reaches this (default: "
                     "%(default)s)")
    mem.add_argument("--document-repeat", type=int, default=MemorizeConfig.document_repeat,
                     help="times each document (work passage, bio) is seen per epoch; QA once "
                     "(default: %(default)s)")
    mem.add_argument("--force", action="store_true", help="rebuild even if up to date")
    mem.set_defaults(func=_memorize)

    train = sub.add_parser("train", help="train an unlearning adapter for a policy")
    train.add_argument("--policy", required=True,
                       help="policy name; any policy in --policies with a corpus, exemplars or "
                       "pii data")
    train.add_argument("--policies", default=str(Path(__file__).resolve().parent.parent
                                                 / "policies"),
                       help="policy directory (default: the shipped policies/)")
    train.add_argument("--method", required=True, choices=method_names(),
                       help="unlearning method: " + ", ".join(method_names()))
    train.add_argument("--target", help="target model directory (default: lethe-target)")
    train.add_argument("--out", help="adapter directory (default: <cache>/adapters/P-M)")
    train.add_argument("--steps", type=int, default=None, help="training steps (method default)")
    train.add_argument("--learning-rate", type=float, default=None,
                       help="learning rate (method default)")
    train.add_argument("--rank", type=int, default=None, help="LoRA rank (method default)")
    train.add_argument("--options", help="JSON object of further method keyword arguments")
    train.add_argument("--if-missing", action="store_true",
                       help="skip when OUT already holds an adapter trained on this target")
    train.set_defaults(func=_train)

    lst = sub.add_parser("list", help="list methods, models and adapters with manifests")
    lst.set_defaults(func=_list)
    return parser


def main(argv: Sequence[str]) -> int:
    from unlearning.corpus import CorpusError
    from unlearning.manifest import ManifestError

    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        result: int = args.func(args)
    except (UsageError, CorpusError, ManifestError) as exc:
        print(f"lethe unlearning: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
