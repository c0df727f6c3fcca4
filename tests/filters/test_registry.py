from __future__ import annotations

import pytest

import filters
from filters.base import Filter, FilterOptions


@pytest.mark.parametrize("name", filters.names())
def test_every_registered_filter_imports_under_its_name(name: str) -> None:
    cls = filters.get(name)
    assert issubclass(cls, Filter)
    assert cls.name == name
    assert issubclass(cls.Options, FilterOptions)
    with pytest.raises(ValueError):
        cls.Options.model_validate({"no_such_option": 1})


def test_model_filters_run_off_the_event_loop() -> None:
    assert {n for n in filters.names() if filters.get(n).blocking} == {"embedding", "classifier"}


def test_unknown_filter_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="known"):
        filters.get("regex")
