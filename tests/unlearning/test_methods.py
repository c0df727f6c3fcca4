"""Each unlearning method, test-sized, on the small memorized target."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from unlearning import manifest, methods
from unlearning.methods import UnlearnResult

# Forget recall (6 probes) must fall by at least 50 points; retain recall (6 held-out probes)
# may fall by at most 34 points, i.e. 2 probes. Measured with the fixture's settings (load 2-4,
# see unlearning/RESULTS.md): GA 100->33 / 83->50, GradDiff 100->0 / 83->67, NPO 100->33 /
# 83->67. GA sits on the retain bound: without early stopping it lost every retain probe.
MIN_FORGET_DROP = 0.5
MAX_RETAIN_DROP = 0.34


@pytest.mark.parametrize("method", methods.names())
def test_method_lowers_forget_recall_and_keeps_retain(
    method: str, trained: Callable[[str], UnlearnResult]
) -> None:
    result = trained(method)
    forget_before, forget_after = result.forget_before.score, result.forget_after.score
    retain_before, retain_after = result.retain_before.score, result.retain_after.score
    assert forget_before >= 0.75, "the target did not recall the forget probes to begin with"
    assert forget_before - forget_after >= MIN_FORGET_DROP, (forget_before, forget_after)
    assert retain_before - retain_after <= MAX_RETAIN_DROP, (retain_before, retain_after)


@pytest.mark.parametrize("method", methods.names())
def test_adapter_directory_is_loadable_by_vllm_and_has_a_full_manifest(
    method: str, trained: Callable[[str], UnlearnResult]
) -> None:
    result = trained(method)
    config = json.loads((result.out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] <= 16
    assert (result.out / "adapter_model.safetensors").stat().st_size > 0
    record = manifest.read(result.out)
    assert record.method == method and record.kind == "adapter"
    assert record.policy == "elena-marquez"
    assert len(record.forget_sha256 or "") == 64 and len(record.retain_sha256 or "") == 64
    assert len(record.base_model_sha256) == 64
    assert record.final_losses and record.training_seconds > 0
    assert 1 <= record.steps <= record.hyperparameters["steps"] and record.stop_reason
    assert record.steps == result.steps
    for when in (record.recall_before, record.recall_after):
        assert set(when) == {"forget", "retain"}


def test_registry_knows_the_three_methods_and_refuses_others() -> None:
    assert methods.names() == ["ga", "graddiff", "npo"]
    with pytest.raises(KeyError, match="known: ga, graddiff, npo"):
        methods.get("rmu")


@pytest.mark.parametrize(
    ("method", "parts", "stops"),
    [
        ("ga", {"forget_nll": 0.5}, False),
        ("ga", {"forget_nll": 9.0}, True),
        ("graddiff", {"forget_nll": 9.0, "retain_nll": 0.1}, True),
        ("graddiff", {"forget_nll": 2.0, "retain_nll": 0.1}, False),
        ("npo", {"npo": 1.0, "log_ratio": -2.0}, False),
        ("npo", {"npo": 0.1, "log_ratio": -80.0}, True),
    ],
)
def test_loss_bound_stops_a_method_that_went_far_enough(
    method: str, parts: dict[str, float], stops: bool
) -> None:
    assert (methods.get(method)().overshot(parts) is not None) is stops


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("ga", {"rank": 128}),
        ("ga", {"steps": 0}),
        ("graddiff", {"retain_weight": -1.0}),
        ("npo", {"beta": 0.0}),
        ("npo", {"learning_rate": 0.0}),
        ("npo", {"max_log_ratio": 0.0}),
        ("ga", {"max_forget_nll": -1.0}),
        ("ga", {"check_every": 0}),
        ("graddiff", {"stop_recall": 1.0}),
    ],
)
def test_bad_configuration_fails_at_construction(method: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        methods.get(method)(**kwargs)  # type: ignore[arg-type]


def test_unknown_keyword_is_refused() -> None:
    with pytest.raises(TypeError):
        methods.get("npo")(temperature=1.0)  # type: ignore[call-arg]
