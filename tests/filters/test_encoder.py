"""The shared MiniLM encoder: int8 ONNX accuracy against PyTorch, backend choice, cache."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from filters.embedding import corpus_chunks
from filters.encoder import Encoder, onnx_path
from tests.filters.conftest import DATA, lines

POLICY_TEXTS = (
    lines("harry-potter-exemplars.txt")
    + lines("harry-potter-near-misses.txt")
    + corpus_chunks((DATA / "protected-work.txt").read_text())
)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from stack import bundle

    return bundle.prepare().embedder  # a no-op once the cache holds the ONNX export


@pytest.fixture(scope="module")
def fast(model_dir: Path) -> Encoder:
    return Encoder(model_dir, backend="onnx")


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Encoder:
    return Encoder(model_dir, backend="torch", cache_size=0)


def test_int8_onnx_agrees_with_pytorch_on_the_policy_data(
    fast: Encoder, reference: Encoder
) -> None:
    a = fast.embed_uncached(POLICY_TEXTS)
    b = reference.embed_uncached(POLICY_TEXTS)
    assert a.shape == b.shape == (len(POLICY_TEXTS), 384)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() >= 0.98, (cosines.argmin(), cosines.min())


def test_int8_onnx_keeps_the_nearest_exemplar_of_each_near_miss(
    fast: Encoder, reference: Encoder
) -> None:
    exemplars, near = lines("harry-potter-exemplars.txt"), lines("harry-potter-near-misses.txt")
    nearest = [
        (enc.embed_uncached(near) @ enc.embed_uncached(exemplars).T).max(axis=1)
        for enc in (fast, reference)
    ]
    assert np.abs(nearest[0] - nearest[1]).max() < 0.05


def test_embeddings_are_unit_vectors(fast: Encoder) -> None:
    norms = np.linalg.norm(fast.embed_uncached(POLICY_TEXTS[:20]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)


def test_a_text_gets_the_same_vector_whatever_it_is_encoded_with(fast: Encoder) -> None:
    short, long = "Boil pasta.", " ".join(POLICY_TEXTS[:6])
    alone = fast.embed_uncached([short])[0]
    batched = fast.embed_uncached([long, short, long])[1]
    assert np.array_equal(alone, batched)


def test_text_longer_than_the_model_positions_is_truncated(fast: Encoder) -> None:
    vec = fast.embed_uncached([" ".join(POLICY_TEXTS)])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()


def test_auto_backend_takes_onnx_when_bundled(model_dir: Path) -> None:
    assert onnx_path(model_dir).is_file()
    assert Encoder(model_dir).backend == "onnx"


def test_auto_backend_falls_back_to_pytorch_without_the_onnx_file(
    model_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "minilm"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("onnx"))
    enc = Encoder(copy)
    assert enc.backend == "torch"
    assert enc.encode(["hello"]).shape == (1, 384)


def test_forced_onnx_without_the_file_fails_loudly(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="models prepare"):
        Encoder(tmp_path, backend="onnx")


def test_unknown_backend_is_rejected(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        Encoder(model_dir, backend="tpu")  # type: ignore[arg-type]


def test_cache_encodes_each_text_once_and_returns_the_same_vectors(model_dir: Path) -> None:
    enc = Encoder(model_dir, backend="onnx")
    texts = ["Dumbledore is the headmaster.", "Boil pasta.", "Dumbledore is the headmaster."]
    first = enc.encode(texts)
    assert (enc.misses, enc.hits) == (2, 1)
    again = enc.encode(texts[:2])
    assert (enc.misses, enc.hits) == (2, 3)
    assert np.array_equal(first[0], first[2])
    assert np.array_equal(first[:2], again)
    assert np.allclose(first[:2], enc.embed_uncached(texts[:2]), atol=1e-6)


def test_cache_evicts_the_least_recently_used_text(model_dir: Path) -> None:
    enc = Encoder(model_dir, backend="onnx", cache_size=2)
    enc.encode(["one"])
    enc.encode(["two"])
    enc.encode(["one"])  # "two" is now the oldest
    enc.encode(["three"])
    misses = enc.misses
    enc.encode(["one", "three"])
    assert enc.misses == misses
    enc.encode(["two"])
    assert enc.misses == misses + 1


def test_concurrent_encodes_agree_with_sequential_ones(model_dir: Path) -> None:
    enc = Encoder(model_dir, backend="onnx", cache_size=8)
    texts = POLICY_TEXTS[:40]
    expected = enc.embed_uncached(texts)
    batches = [texts[k : k + 5] for k in range(0, 40, 5)] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(enc.encode, batches))
    for batch, got in zip(batches, results, strict=True):
        start = texts.index(batch[0])
        assert np.allclose(got, expected[start : start + len(batch)], atol=1e-5)


def test_cache_size_comes_from_the_environment_and_zero_turns_it_off(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_ENCODER_CACHE", "0")
    uncached = Encoder(model_dir, backend="onnx")
    uncached.encode(["a text", "a text"])
    uncached.encode(["a text"])
    assert uncached.cache_size == 0 and uncached.misses == 2  # once per call, never kept
    monkeypatch.setenv("LETHE_ENCODER_CACHE", "-1")
    with pytest.raises(ValueError, match="cache size"):
        Encoder(model_dir, backend="onnx")
