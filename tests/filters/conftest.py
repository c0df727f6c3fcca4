"""Shared heavy objects for filter tests: one real MiniLM encoder, the served tokenizer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from filters.cache import cache_dir
from filters.resources import Resources

DATA = Path(__file__).resolve().parents[2] / "policies" / "data"


def lines(name: str) -> list[str]:
    return [s.strip() for s in (DATA / name).read_text().splitlines() if s.strip()]


def served_model_dir() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def resources() -> Resources:
    """Real models: the bundled MiniLM (or the pip copy) and the served model's tokenizer."""
    tok_dir = served_model_dir()
    deadline = time.monotonic() + float(os.environ.get("LETHE_TEST_WAIT_MODEL_S", "0"))
    while not (tok_dir / "tokenizer.json").exists() and time.monotonic() < deadline:
        time.sleep(5)
    return Resources(tokenizer_dir=tok_dir if (tok_dir / "tokenizer.json").exists() else None)


@pytest.fixture(scope="session")
def tokenizer(resources: Resources) -> object:
    if resources.tokenizer_dir is None:
        pytest.skip(f"served model not bundled yet at {served_model_dir()} (run the bundle step)")
    return resources.tokenizer
