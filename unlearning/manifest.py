"""manifest.json beside every model and adapter Lethe trains: what, from what, how, how well."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """A manifest is missing, unreadable or lacks a field; the message names the file."""


@dataclass(frozen=True)
class Manifest:
    kind: str  # "adapter" | "target" | "oracle"
    method: str
    policy: str | None
    hyperparameters: dict[str, Any]
    forget_sha256: str | None
    retain_sha256: str | None
    base_model: str
    base_model_sha256: str
    training_seconds: float
    steps: int
    final_losses: dict[str, float]
    recall_before: dict[str, dict[str, Any]]
    recall_after: dict[str, dict[str, Any]]
    stop_reason: str | None = None
    checks: list[dict[str, float]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    format: int = FORMAT

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    def summary(self) -> dict[str, Any]:
        """The short form the gateway shows in its adapter listing."""
        return {
            "kind": self.kind,
            "method": self.method,
            "policy": self.policy,
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "training_seconds": self.training_seconds,
            "forget_recall": {
                "before": self.recall_before.get("forget", {}).get("score"),
                "after": self.recall_after.get("forget", {}).get("score"),
            },
            "retain_recall": {
                "before": self.recall_before.get("retain", {}).get("score"),
                "after": self.recall_after.get("retain", {}).get("score"),
            },
            "created_at": self.created_at,
        }


def known_fields() -> list[str]:
    return [f.name for f in fields(Manifest)]


def required_fields() -> list[str]:
    """Fields without a default: a manifest written before a defaulted field existed loads."""
    return [
        f.name for f in fields(Manifest) if f.default is MISSING and f.default_factory is MISSING
    ]


def read(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    missing = [name for name in required_fields() if name not in data]
    if missing:
        raise ManifestError(f"{path}: missing fields {', '.join(missing)}")
    unknown = sorted(set(data) - set(known_fields()))
    if unknown:
        raise ManifestError(f"{path}: unknown fields {', '.join(unknown)}")
    return Manifest(**data)
