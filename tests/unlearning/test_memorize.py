"""Memorizing facts into the target model, on the real bundled model (test-sized run)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unlearning.fixtures import SMALL_MEMORIZE, small_memorize_set
from unlearning import corpus, manifest
from unlearning.memorize import MemorizeResult, memorize
from unlearning.recall import measure
from unlearning.training import load_model


def test_memorize_raises_forget_recall(small_target: MemorizeResult) -> None:
    record = small_target.manifest
    assert record.recall_before["set"]["qa_accuracy"] <= 0.2
    assert record.recall_after["set"]["qa_accuracy"] >= 0.75
    assert record.steps >= 1 and record.training_seconds > 0


def test_memorized_model_is_a_servable_directory(small_target: MemorizeResult) -> None:
    out = small_target.out
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / name).is_file(), name
    assert (out / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (out / "tokenizer_config.json").read_text()
    )


def test_saved_model_recalls_what_the_manifest_says(
    small_target: MemorizeResult, small_forget: corpus.TextSet
) -> None:
    model, tokenizer = load_model(small_target.out)
    again = measure(model, tokenizer, small_forget)
    assert again.qa_accuracy is not None and again.qa_accuracy >= 0.75


def test_up_to_date_target_is_reused_without_training(
    small_target: MemorizeResult,
    base_model: Path,
    small_forget: corpus.TextSet,
    small_retain: corpus.TextSet,
) -> None:
    memorized = small_memorize_set(small_forget, small_retain)
    messages: list[str] = []
    again = memorize(
        base_model, small_target.out, memorized, "target", SMALL_MEMORIZE, say=messages.append
    )
    assert again.reused and "up to date" in messages[0]
    assert again.manifest == manifest.read(small_target.out)
