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
    #: The static model distilled from MiniLM (the cascade's first stage); default: beside
    #: the bundled MiniLM, `all-minilm-l6-v2-static`.
    static_model_dir: Path | None = None
    _encoder: Any = field(default=None, repr=False)
    _static: Any = field(default=None, repr=False)
    _screens: dict[str, Any] = field(default_factory=dict, repr=False)
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
    def static_encoder(self) -> Any:
        """The shared static encoder (filters.static_encoder.StaticEncoder), or None when
        `lethe models prepare` has not built it."""
        from filters import static_encoder

        model_dir = self.static_model_dir
        if model_dir is None:
            beside = (self.embedding_model_dir or static_encoder.default_dir()).parent
            model_dir = beside / static_encoder.DIRNAME
            if not (model_dir / static_encoder.WEIGHTS).is_file():
                model_dir = static_encoder.default_dir()
        with self._lock:
            if self._static is None and (model_dir / static_encoder.WEIGHTS).is_file():
                self._static = static_encoder.StaticEncoder(model_dir)
            return self._static

    def screen(self, positives: Any) -> Any:
        """The static screen of a list of positives, shared by the filters that use it."""
        from filters.cascade import StaticScreen, text_digest

        key = text_digest(positives)
        static = self.static_encoder
        with self._lock:
            if key not in self._screens:
                self._screens[key] = StaticScreen(static, positives)
            return self._screens[key]

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
