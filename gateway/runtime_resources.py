"""Where the shared models live, from settings."""

from __future__ import annotations

from pathlib import Path

from filters.cache import cache_dir
from filters.resources import Resources
from gateway.settings import Settings


def cache_root(settings: Settings) -> Path:
    return cache_dir(settings.cache_dir)


def resources_from_settings(settings: Settings) -> Resources:
    models = cache_root(settings) / "models"
    return Resources(
        embedding_model_dir=settings.embedding_model_dir or models / "all-minilm-l6-v2",
        tokenizer_dir=settings.tokenizer_dir or models / "smollm2-135m-instruct",
    )
