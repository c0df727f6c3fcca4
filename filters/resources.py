"""Heavy objects that filters share: built once at start-up, owned by the app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Resources:
    """Lazily built shared models. `embedding_model_dir` and `tokenizer_dir` come from settings."""

    embedding_model_dir: Path | None = None
    tokenizer_dir: Path | None = None
    _encoder: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def encoder(self) -> Any:
        """The shared sentence encoder (filters.encoder.Encoder)."""
        with self._lock:
            if self._encoder is None:
                from filters.encoder import Encoder

                self._encoder = Encoder(self.embedding_model_dir)
            return self._encoder

    @property
    def tokenizer_loaded(self) -> bool:
        """True once a filter asked for the tokenizer (the gateway then checks it against the
        engine's)."""
        return self._tokenizer is not None

    @property
    def tokenizer(self) -> Any:
        """The served model's Hugging Face tokenizer, for token-level bans."""
        with self._lock:
            if self._tokenizer is None:
                if self.tokenizer_dir is None:
                    raise RuntimeError("no tokenizer directory configured (LETHE_TOKENIZER_DIR)")
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_dir))
            return self._tokenizer
