"""The `lethe` command: each package's subcommands on one parser.

The gateway, the stack, unlearning, evaluation and the benchmark each own their commands;
this module is the only place that imports them all, so none of them imports another's CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gateway import cli as gateway_cli
from stack import cli as stack_cli
from stack.cli import OneLineParser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lethe")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _unlearning(argv: list[str]) -> int:
    from unlearning.cli import main as unlearning_main

    return unlearning_main(argv)


def _eval(argv: list[str]) -> int:
    from evaluation.cli import main as eval_main

    return eval_main(argv)


def _bench(argv: list[str]) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(argv)


#: Commands that parse their own options (argparse's REMAINDER would eat `--flags` here).
_DELEGATED: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "unlearning": (_unlearning, "memorize a target model, train unlearning adapters"),
    "eval": (_eval, "evaluate arms against extraction attacks"),
    "bench": (_bench, "performance harness"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lethe",
        description="Lethe: an OpenAI-compatible gateway that suppresses content, and its tools.",
    )
    parser.add_argument("--version", action="version", version=f"lethe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    gateway_cli.add_commands(sub)
    stack_cli.add_commands(sub)
    for name, (_, text) in _DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        return _DELEGATED[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except gateway_cli.user_errors() + stack_cli.user_errors() as exc:
        print(f"lethe: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return result


def _one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"setting {where}: {first['msg']}"
    return str(exc).strip().replace("\n", "; ")


if __name__ == "__main__":
    sys.exit(main())
