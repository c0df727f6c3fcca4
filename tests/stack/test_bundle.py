"""The offline model bundle in the real cache (built by `lethe models prepare`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from stack import bundle


@pytest.fixture(scope="session")
def prepared() -> bundle.BundlePaths:
    return bundle.prepare()


def test_cache_dir_prefers_override_then_env_then_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LETHE_CACHE_DIR", raising=False)
    assert bundle.cache_dir() == Path.home() / ".cache" / "lethe"
    monkeypatch.setenv("LETHE_CACHE_DIR", str(tmp_path / "env"))
    assert bundle.cache_dir() == tmp_path / "env"
    assert bundle.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert bundle.model_paths(tmp_path).generator == tmp_path / "models" / "smollm2-135m-instruct"
    assert bundle.model_paths(tmp_path).embedder == tmp_path / "models" / "all-minilm-l6-v2"


def test_prepare_again_is_a_fast_no_op_with_the_same_paths(prepared: bundle.BundlePaths) -> None:
    before = (prepared.generator / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    again = bundle.prepare()
    elapsed = time.monotonic() - started
    assert again == prepared
    assert (prepared.generator / "model.safetensors").stat().st_mtime_ns == before
    assert elapsed < 5.0, f"a prepared bundle took {elapsed:.1f} s to confirm"


def test_generator_dir_is_a_plain_fp32_safetensors_checkpoint(
    prepared: bundle.BundlePaths,
) -> None:
    gen = prepared.generator
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (gen / name).is_file(), name
    config = json.loads((gen / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "float32"
    marker = bundle.read_marker(gen)
    assert marker is not None
    assert marker["sources"]["source"] == f"{bundle.SMOLLM2_DIST}=={bundle.SMOLLM2_VERSION}"


def test_generator_tokenizer_carries_the_chatml_template(prepared: bundle.BundlePaths) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prepared.generator)
    assert tokenizer.chat_template
    text = str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
        )
    )
    assert "<|im_start|>user\nhi<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"


def test_generator_answers_the_capital_of_france_greedily(prepared: bundle.BundlePaths) -> None:
    assert "Paris" in bundle.verify_generator(prepared.generator)


def test_embedder_gives_a_384_dim_unit_vector(prepared: bundle.BundlePaths) -> None:
    import numpy as np

    vector = np.asarray(bundle.verify_embedder(prepared.embedder))
    assert vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)


def test_embedder_ranks_a_paraphrase_above_an_unrelated_sentence(
    prepared: bundle.BundlePaths,
) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(prepared.embedder), device="cpu")
    anchor, paraphrase, unrelated = model.encode(
        ["Who wrote the Harry Potter books?", "Name the author of Harry Potter.", "Boil pasta."]
    )
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.3


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / bundle.MARKER).unlink(), id="marker-missing"),
        pytest.param(lambda d: (d / bundle.MARKER).write_text("{not json"), id="marker-corrupt"),
        pytest.param(lambda d: (d / "config.json").unlink(), id="file-missing"),
        pytest.param(
            lambda d: (d / "config.json").write_text((d / "config.json").read_text() + " "),
            id="file-size-changed",
        ),
    ],
)
def test_damaged_embedder_is_rebuilt(
    prepared: bundle.BundlePaths, tmp_path: Path, damage: object
) -> None:
    cache = tmp_path / "cache"
    copy = bundle.model_paths(cache)
    # the generator is large: link it so only the embedder step runs
    copy.generator.parent.mkdir(parents=True)
    copy.generator.symlink_to(prepared.generator, target_is_directory=True)
    shutil.copytree(prepared.embedder, copy.embedder)
    assert bundle.read_marker(copy.embedder) is not None
    damage(copy.embedder)  # type: ignore[operator]
    assert bundle.read_marker(copy.embedder) is None
    bundle.prepare(cache_dir=cache, verify=False)
    assert bundle.read_marker(copy.embedder) is not None
    assert (copy.embedder / "config.json").read_text() == (
        prepared.embedder / "config.json"
    ).read_text()
    assert not [p for p in copy.embedder.parent.iterdir() if p.name.startswith(".all-")]
