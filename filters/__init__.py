"""Filters, registered by name; the name is the `type` in policy YAML."""

from __future__ import annotations

import importlib

from filters.base import (
    ALLOW,
    Action,
    Filter,
    FilterOptions,
    FilterResult,
    PolicyData,
    ScanResult,
    Span,
    StreamScanner,
    WindowScanner,
)

_MODULES = {
    "embedding": "filters.embedding",
    "verbatim": "filters.verbatim",
    "pii": "filters.pii",
    "logit_bias": "filters.logit_bias",
    "classifier": "filters.classifier",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> type[Filter]:
    """The filter class registered as `name` (imported lazily: some pull in torch)."""
    if name not in _MODULES:
        raise KeyError(f"unknown filter type {name!r}; known: {', '.join(names())}")
    module = importlib.import_module(_MODULES[name])
    cls: type[Filter] = module.FILTER
    return cls


__all__ = [
    "ALLOW",
    "Action",
    "Filter",
    "FilterOptions",
    "FilterResult",
    "PolicyData",
    "ScanResult",
    "Span",
    "StreamScanner",
    "WindowScanner",
    "get",
    "names",
]
