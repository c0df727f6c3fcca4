"""The `lethe` command."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lethe")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(args)


def _models_prepare(args: argparse.Namespace) -> int:
    from gateway import bundle

    if args.gateway_only:
        paths = bundle.prepare_gateway(cache_dir=args.cache_dir, verify=not args.no_verify)
        print(f"tokenizer: {paths.generator}\nembedder:  {paths.embedder}")
        return 0
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
    from gateway.policy.loading import check_command

    return check_command(args.directory, allow_empty=args.allow_empty)


def _unlearning(args: argparse.Namespace) -> int:
    from unlearning.cli import main as unlearning_main

    return unlearning_main(args.rest)


def _eval(args: argparse.Namespace) -> int:
    from evaluation.cli import main as eval_main

    return eval_main(args.rest)


def _bench(args: argparse.Namespace) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(args.rest)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line (and where to read more), exit status 2, no traceback."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lethe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lethe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Every setting is a flag here and a LETHE_* environment "
        "variable; a flag wins over the variable. One process per pod: scale with replicas "
        "(metrics and the filter pool are per process).",
        epilog="Secrets (LETHE_API_KEYS, LETHE_ADMIN_KEY, LETHE_AUDIT_KEY, "
        "LETHE_UPSTREAM_API_KEY) are read from the environment or from the --api-keys-file/"
        "--admin-key-file/--upstream-api-key-file files only.",
    )
    add_settings_arguments(serve)
    serve.set_defaults(func=_serve)

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
    from gateway.engine import add_arguments

    add_arguments(eng)
    eng.set_defaults(func=_engine)

    up_parser = sub.add_parser("up", help="start vLLM and the gateway together (make run)")
    from gateway.up import add_arguments as add_up_arguments

    add_up_arguments(up_parser)
    up_parser.set_defaults(func=_up)

    policies = sub.add_parser("policies", help="policy files")
    policies_sub = policies.add_subparsers(dest="policies_command", required=True)
    check = policies_sub.add_parser(
        "check", help="validate a policy directory",
        description="Validate every policy file and build its filters as the gateway would; "
        "reports every bad file, with line and field.",
    )
    check.add_argument("directory", help="directory of policy YAML files")
    check.add_argument("--allow-empty", action="store_true",
                       help="succeed on a directory without policy files")
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


def _flag_type(annotation: Any) -> Any:
    """The argparse type of a settings field: the non-None member of an Optional."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if members else str
    if typing.get_origin(annotation) is tuple:
        return lambda text: tuple(x.strip() for x in text.split(",") if x.strip())
    if annotation in (int, float, Path):
        return annotation
    return str


def setting_docs() -> dict[str, str]:
    """Each setting's `#:` comment in gateway/settings.py, read from its source: the comment
    an operator reads there is the flag's help, with no second copy to drift."""
    import inspect
    import re

    from gateway.settings import Settings

    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"(\w+)\s*:", stripped)
        if field and pending:
            docs[field.group(1)] = " ".join(pending)
        pending = []
    return docs


#: Secrets are never flags: a command line is visible to every user of the host (`ps`).
_SECRET_SETTINGS = frozenset({"api_keys", "admin_key", "audit_key", "upstream_api_key"})


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per gateway setting, its help naming the LETHE_* variable it maps to."""
    from gateway.settings import Settings

    docs = setting_docs()
    for name, field in Settings.model_fields.items():
        if name in _SECRET_SETTINGS:
            continue
        flag = "--" + name.replace("_", "-")
        env = f"LETHE_{name.upper()}"
        default = field.default
        shown = "" if default is None or default == () else f"; default {default}"
        text = (field.description or docs.get(name) or name.replace("_", " ")).rstrip(".")
        help_text = f"{text} (env {env}{shown})".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(field.annotation) is typing.Literal:
            parser.add_argument(flag, dest=name, default=None,
                                choices=typing.get_args(field.annotation), help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None,
                                type=_flag_type(field.annotation), help=help_text)


_DELEGATED = {"unlearning": _unlearning, "eval": _eval, "bench": _bench}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Mistakes a user can make (bad settings, policies, missing models): one line, exit 2."""
    from pydantic import ValidationError

    from gateway.bundle import BundleError
    from gateway.engine import EngineError
    from gateway.policy import PolicyError

    return (ValidationError, BundleError, EngineError, PolicyError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        # These commands own their options; argparse's REMAINDER would eat `--flags` here.
        return _DELEGATED[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except _user_errors() as exc:
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
