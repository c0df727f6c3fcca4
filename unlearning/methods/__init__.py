"""Unlearning methods, registered by name: `lethe unlearning train --method NAME`."""

from __future__ import annotations

import importlib

from unlearning.methods.base import UnlearningMethod, UnlearnResult

_MODULES = {
    "ga": "unlearning.methods.gradient_ascent",
    "graddiff": "unlearning.methods.gradient_difference",
    "npo": "unlearning.methods.npo",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> type[UnlearningMethod]:
    """The method class registered as `name` (imported lazily)."""
    if name not in _MODULES:
        raise KeyError(f"unknown unlearning method {name!r}; known: {', '.join(names())}")
    module = importlib.import_module(_MODULES[name])
    cls: type[UnlearningMethod] = module.METHOD
    return cls


__all__ = ["UnlearnResult", "UnlearningMethod", "get", "names"]
