"""Where the shared models live, from settings."""

from __future__ import annotations

from pathlib import Path

from filters.resources import Resources
from gateway.settings import Settings


def cache_root(settings: Settings) -> Path:
    import os

    if settings.cache_dir is not None:
        return settings.cache_dir
    env = os.environ.get("LETHE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lethe"


def resources_from_settings(settings: Settings) -> Resources:
    models = cache_root(settings) / "models"
    return Resources(
        embedding_model_dir=settings.embedding_model_dir or models / "all-minilm-l6-v2",
        tokenizer_dir=settings.tokenizer_dir or models / "smollm2-135m-instruct",
    )
