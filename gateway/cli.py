"""The `lethe` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(args)


def _models_prepare(args: argparse.Namespace) -> int:
    from gateway import bundle

    paths = bundle.prepare(cache_dir=args.cache_dir, verify=not args.no_verify)
    print(f"generator: {paths.generator}\nembedder:  {paths.embedder}")
    return 0


def _engine(args: argparse.Namespace) -> int:
    from gateway import engine

    return engine.main(args)


def _up(args: argparse.Namespace) -> int:
    from gateway import up

    return up.main(args)


def _policies_check(args: argparse.Namespace) -> int:
    from gateway.policy import check_command

    return check_command(args.directory)


def _unlearning(args: argparse.Namespace) -> int:
    from unlearning.cli import main as unlearning_main

    return unlearning_main(args.rest)


def _eval(args: argparse.Namespace) -> int:
    from evaluation.cli import main as eval_main

    return eval_main(args.rest)


def _bench(args: argparse.Namespace) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lethe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--upstream", help="vLLM base URL, e.g. http://127.0.0.1:8001")
    serve.add_argument("--policies", help="policy directory")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="the offline model bundle")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    prepare = models_sub.add_parser("prepare", help="build the model bundle into the cache")
    prepare.add_argument("--cache-dir", default=None)
    prepare.add_argument("--no-verify", action="store_true", help="skip the greedy check")
    prepare.set_defaults(func=_models_prepare)

    eng = sub.add_parser("engine", help="run a vLLM OpenAI server on a bundled model")
    from gateway.engine import add_arguments

    add_arguments(eng)
    eng.set_defaults(func=_engine)

    up_parser = sub.add_parser("up", help="start vLLM and the gateway together (make run)")
    from gateway.up import add_arguments as add_up_arguments

    add_up_arguments(up_parser)
    up_parser.set_defaults(func=_up)

    policies = sub.add_parser("policies", help="policy files")
    policies_sub = policies.add_subparsers(dest="policies_command", required=True)
    check = policies_sub.add_parser("check", help="validate a policy directory")
    check.add_argument("directory")
    check.set_defaults(func=_policies_check)

    for name, func, text in (
        ("unlearning", _unlearning, "memorize a target model, train unlearning adapters"),
        ("eval", _eval, "evaluate arms against extraction attacks"),
        ("bench", _bench, "performance harness"),
    ):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    return parser


_DELEGATED = {"unlearning": _unlearning, "eval": _eval, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        # These commands own their options; argparse's REMAINDER would eat `--flags` here.
        return _DELEGATED[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
