"""Filters by policy `type`.

A filter is a module of this package named after its type (`filters/pii.py` is `type: pii`)
whose `FILTER` is its class: adding one is that file and its tests. `register()` adds a class
from elsewhere (a plug-in, a test double).
"""

from __future__ import annotations

import importlib
import pkgutil

from filters.base import (
    ALLOW,
    Action,
    Filter,
    FilterOptions,
    FilterResult,
    PolicyData,
    RequestPatcher,
    ScanResult,
    Span,
    StreamScanner,
    TextFilter,
    WindowScanner,
)

_registered: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Make `cls` the filter of policy `type: <cls.name>` (usable as a class decorator)."""
    if not isinstance(cls, type) or not issubclass(cls, TextFilter | RequestPatcher):
        raise TypeError(f"{cls!r} is neither a TextFilter nor a RequestPatcher")
    _registered[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _from_module(name: str) -> type[Filter] | None:
    """This package's module `name`, when it is a filter (imported lazily: some pull in
    torch, so only the types a policy names are imported)."""
    if not name.isidentifier() or name.startswith("_"):
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            return None
        raise
    cls = getattr(module, "FILTER", None)
    return cls if isinstance(cls, type) and getattr(cls, "name", None) == name else None


def names() -> list[str]:
    """Every filter type: this package's filter modules and the registered classes."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if _from_module(m.name) is not None}
    return sorted(found | set(_registered))


def get(name: str) -> type[Filter]:
    """The filter class of policy `type: <name>`."""
    cls = _registered.get(name) or _from_module(name)
    if cls is None:
        raise KeyError(f"unknown filter type {name!r}; known: {', '.join(names())}")
    return cls


__all__ = [
    "ALLOW",
    "Action",
    "Filter",
    "FilterOptions",
    "FilterResult",
    "PolicyData",
    "RequestPatcher",
    "ScanResult",
    "Span",
    "StreamScanner",
    "TextFilter",
    "WindowScanner",
    "get",
    "names",
    "register",
    "unregister",
]
