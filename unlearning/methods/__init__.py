"""Unlearning methods by name: `lethe unlearning train --method NAME`.

A method is a module of this package whose `METHOD` is an `UnlearningMethod` subclass; its
`name` is what the command line and policy files (`adapter.method`) call it. Adding one is
that file and its tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from unlearning.methods.base import UnlearningMethod, UnlearnResult


@cache
def _methods() -> dict[str, type[UnlearningMethod]]:
    found: dict[str, type[UnlearningMethod]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        cls = getattr(module, "METHOD", None)
        if isinstance(cls, type) and issubclass(cls, UnlearningMethod):
            found[cls.name] = cls
    return found


def names() -> list[str]:
    return sorted(_methods())


def get(name: str) -> type[UnlearningMethod]:
    """The method class called `name`."""
    try:
        return _methods()[name]
    except KeyError:
        raise KeyError(
            f"unknown unlearning method {name!r}; known: {', '.join(names())}"
        ) from None


__all__ = ["UnlearnResult", "UnlearningMethod", "get", "names"]
