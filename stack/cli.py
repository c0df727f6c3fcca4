"""`lethe models`, `lethe engine`, `lethe up`: running the local stack; and the parser class
every `lethe` command shares."""

from __future__ import annotations

import argparse
import typing
from typing import Any


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line (and where to read more), exit status 2, no traceback."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _models_prepare(args: argparse.Namespace) -> int:
    from stack import bundle

    if args.gateway_only:
        paths = bundle.prepare_gateway(cache_dir=args.cache_dir, verify=not args.no_verify)
        print(f"tokenizer: {paths.generator}\nembedder:  {paths.embedder}")
        return 0
    paths = bundle.prepare(cache_dir=args.cache_dir, verify=not args.no_verify)
    print(f"generator: {paths.generator}\nembedder:  {paths.embedder}")
    return 0


def _engine(args: argparse.Namespace) -> int:
    from stack import engine

    return engine.main(args)


def _up(args: argparse.Namespace) -> int:
    from stack import up

    return up.main(args)


def add_commands(sub: Any) -> None:
    """`models prepare`, `engine` and `up` on the `lethe` parser's subcommands."""
    models = sub.add_parser("models", help="the offline model bundle")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    prepare = models_sub.add_parser("prepare", help="build the model bundle into the cache")
    prepare.add_argument("--cache-dir", default=None,
                         help="cache directory (env LETHE_CACHE_DIR; default ~/.cache/lethe)")
    prepare.add_argument("--no-verify", action="store_true", help="skip the greedy check")
    prepare.add_argument("--gateway-only", action="store_true",
                         help="only what the gateway reads: the embedder and the generator's "
                         "tokenizer, no generator weights (the gateway image)")
    prepare.set_defaults(func=_models_prepare)

    eng = sub.add_parser("engine", help="run a vLLM OpenAI server on a bundled model")
    from stack.engine import add_arguments

    add_arguments(eng)
    eng.set_defaults(func=_engine)

    up_parser = sub.add_parser("up", help="start vLLM and the gateway together (make run)")
    from stack.up import add_arguments as add_up_arguments

    add_up_arguments(up_parser)
    up_parser.set_defaults(func=_up)


def user_errors() -> tuple[type[BaseException], ...]:
    """A bundle that cannot be built, an engine that cannot start: one line, exit 2."""
    from stack.bundle import BundleError
    from stack.engine import EngineError

    return (BundleError, EngineError)
