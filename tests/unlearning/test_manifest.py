"""Manifests: every field written, read back, and clear errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearning import manifest


def _sample() -> manifest.Manifest:
    return manifest.Manifest(
        kind="adapter",
        method="npo",
        policy="elena-marquez",
        hyperparameters={"steps": 3},
        forget_sha256="a" * 64,
        retain_sha256="b" * 64,
        base_model="/models/t",
        base_model_sha256="c" * 64,
        training_seconds=1.5,
        steps=3,
        final_losses={"npo": 0.1},
        recall_before={"forget": {"score": 1.0}, "retain": {"score": 1.0}},
        recall_after={"forget": {"score": 0.0}, "retain": {"score": 0.9}},
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    record = _sample()
    record.write(tmp_path)
    assert manifest.read(tmp_path) == record
    assert set(json.loads((tmp_path / "manifest.json").read_text())) == set(manifest.known_fields())


def test_manifest_without_the_later_optional_fields_still_reads(tmp_path: Path) -> None:
    _sample().write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    del data["stop_reason"], data["checks"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    record = manifest.read(tmp_path)
    assert record.stop_reason is None and record.checks == []


def test_summary_reports_recall_before_and_after() -> None:
    summary = _sample().summary()
    assert summary["forget_recall"] == {"before": 1.0, "after": 0.0}
    assert summary["retain_recall"] == {"before": 1.0, "after": 0.9}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not readable JSON"),
        ("[]", "expected a JSON object"),
        ('{"kind": "adapter"}', "missing fields"),
    ],
)
def test_bad_manifest_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(manifest.ManifestError, match=message):
        manifest.read(tmp_path)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    _sample().write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["surprise"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(manifest.ManifestError, match="unknown fields surprise"):
        manifest.read(tmp_path)
