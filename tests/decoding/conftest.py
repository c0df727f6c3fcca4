"""The served model's tokenizer and its byte vocabulary, shared by the decoding tests."""

from __future__ import annotations

from typing import Any

import pytest

from decoding.index import Vocabulary
from tests.filters.conftest import resources, tokenizer

__all__ = ["resources", "tokenizer"]


@pytest.fixture(scope="session")
def vocab(tokenizer: Any) -> Vocabulary:
    return Vocabulary(tokenizer)
