"""The Lethe cache: where it is, and how a directory in it is written — whole, so a reader
(the engine loading an adapter, a second `prepare`, a policy load) sees the old directory or
the new one, never half of one. The rules every package uses: a leaf module, it imports
nothing of ours, so anything may import it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir(override: str | Path | None = None) -> Path:
    """The Lethe cache (models, adapters, calibrations, logs): `override` (LETHE_CACHE_DIR in
    settings, a --cache-dir flag), else the LETHE_CACHE_DIR environment variable, else
    ~/.cache/lethe."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LETHE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lethe"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh directory to fill; when the block ends without an error it replaces `target`,
    otherwise it is removed and `target` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
