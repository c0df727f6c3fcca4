"""`lethe serve` and `lethe policies check`: the gateway's commands (lethe_cli assembles
`lethe`)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(args)


def _policies_check(args: argparse.Namespace) -> int:
    from gateway.policy.loading import check_command

    return check_command(args.directory, allow_empty=args.allow_empty)


def add_commands(sub: Any) -> None:
    """`serve` and `policies check` on the `lethe` parser's subcommands."""
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


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad settings or policies: one line, exit 2."""
    from pydantic import ValidationError

    from gateway.policy import PolicyError

    return (ValidationError, PolicyError)
