"""The unlearning fixtures (real model, test-sized runs) live in tests/unlearning/fixtures.py."""

from tests.unlearning.fixtures import (  # noqa: F401
    base_model,
    small_forget,
    small_retain,
    small_target,
    trained,
)
