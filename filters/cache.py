"""Where the Lethe cache is: the one rule every package uses (a leaf module: it imports
nothing of ours, so anything may import it)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(override: str | Path | None = None) -> Path:
    """The Lethe cache (models, adapters, calibrations, logs): `override` (LETHE_CACHE_DIR in
    settings, a --cache-dir flag), else the LETHE_CACHE_DIR environment variable, else
    ~/.cache/lethe."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LETHE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lethe"
