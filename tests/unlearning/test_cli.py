"""`lethe unlearning train --if-missing`: an adapter built on these target weights is kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.unlearning.test_manifest import _sample
from unlearning import cli, training


@pytest.fixture
def target(tmp_path: Path) -> Path:
    model = tmp_path / "target"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    return model


def _adapter(tmp_path: Path, base_sha: str) -> Path:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    dataclasses.replace(_sample(), base_model_sha256=base_sha).write(out)
    return out


def test_if_missing_skips_an_adapter_trained_on_these_weights(
    tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _adapter(tmp_path, training.weights_sha256(target))
    rc = cli.main(["train", "--policy", "elena-marquez", "--method", "npo",
                   "--target", str(target), "--out", str(out), "--if-missing"])
    assert rc == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("breakage", ["other weights", "no adapter_config", "bad manifest"])
def test_if_missing_does_not_trust_a_stale_or_broken_adapter(
    tmp_path: Path, target: Path, breakage: str
) -> None:
    out = _adapter(tmp_path, training.weights_sha256(target))
    if breakage == "other weights":
        (target / "model.safetensors").write_bytes(b"weights v2")
    elif breakage == "no adapter_config":
        (out / "adapter_config.json").unlink()
    else:
        (out / "manifest.json").write_text("{not json")
    assert not cli._adapter_current(out, target)
