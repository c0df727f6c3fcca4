"""The small memorized target and its adapters (tests/unlearning/fixtures.py), for the attacks
on removal."""

from tests.unlearning.fixtures import (  # noqa: F401
    base_model,
    small_forget,
    small_retain,
    small_target,
    trained,
)
