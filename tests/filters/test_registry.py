from __future__ import annotations

from typing import Any

import pytest

import filters
from filters.base import FilterOptions, PolicyData, RequestPatcher, TextFilter


@pytest.mark.parametrize("name", filters.names())
def test_every_registered_filter_imports_under_its_name(name: str) -> None:
    cls = filters.get(name)
    assert issubclass(cls, TextFilter | RequestPatcher)
    assert cls.name == name
    assert issubclass(cls.Options, FilterOptions)
    with pytest.raises(ValueError):
        cls.Options.model_validate({"no_such_option": 1})


def test_the_shipped_filters_are_found_by_their_module_names() -> None:
    shipped = {"classifier", "embedding", "logit_bias", "pii", "verbatim"}
    assert shipped <= set(filters.names())
    assert not {"base", "normalize", "windows", "resources"} & set(filters.names())


@pytest.mark.parametrize(
    ("name", "judges_text", "patches_requests"),
    [("logit_bias", False, True), ("pii", True, False), ("verbatim", True, False),
     ("embedding", True, False), ("classifier", True, False)],
)
def test_each_filter_is_the_kind_it_does(
    name: str, judges_text: bool, patches_requests: bool
) -> None:
    cls = filters.get(name)
    assert issubclass(cls, TextFilter) is judges_text
    assert issubclass(cls, RequestPatcher) is patches_requests


def test_model_filters_run_off_the_event_loop() -> None:
    blocking = {n for n in filters.names() if getattr(filters.get(n), "blocking", False)}
    assert blocking == {"embedding", "classifier"}


@pytest.mark.parametrize("name", ["regex", "base", "normalize", "windows", "_private", "a.b"])
def test_unknown_filter_names_and_helper_modules_are_a_clear_error(name: str) -> None:
    with pytest.raises(KeyError, match="known: classifier, embedding"):
        filters.get(name)


class _Upper(TextFilter):
    name = "upper-only"

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> _Upper:
        return cls()

    def check(self, text: str) -> filters.FilterResult:
        return filters.ALLOW


def test_a_filter_from_elsewhere_is_registered_and_removed() -> None:
    filters.register(_Upper)
    try:
        assert filters.get("upper-only") is _Upper
        assert "upper-only" in filters.names()
    finally:
        filters.unregister("upper-only")
    with pytest.raises(KeyError):
        filters.get("upper-only")


def test_registering_a_class_that_is_no_filter_is_refused() -> None:
    with pytest.raises(TypeError, match="neither"):
        filters.register(dict)  # type: ignore[arg-type]
