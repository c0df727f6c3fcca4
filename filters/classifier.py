"""A guardrail classifier: probability that a text window is about the policy's target.

Two back-ends, chosen by options:
- default: logistic regression trained at load time on the shared MiniLM embeddings of the
  policy's exemplars (and corpus chunks) as positives and its near-misses as negatives, with
  balanced class weights (the two lists rarely have the same size). Defaults C=10 and
  threshold 0.6 come from 2-fold cross-validation on the shipped Harry Potter exemplars and
  near-misses: 82% of held-out exemplars and 5% of held-out near-misses hit (C=1: 58% / 0%;
  threshold 0.5: 90% / 17%);
- `model_dir`: any local Hugging Face sequence-classification model directory
  (AutoModelForSequenceClassification); `label` names the positive label in its config.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field, model_validator

from filters.base import FilterOptions, PolicyData
from filters.cascade import CalibrationSet, text_digest
from filters.embedding import corpus_chunks
from filters.windows import Verdict, WindowedFilter, WindowOptions


class Backend(Protocol):
    def predict(self, texts: list[str]) -> np.ndarray:
        """Probability of the positive class per text."""
        ...


class EmbeddingLogReg:
    def __init__(self, encoder: Any, positives: list[str], negatives: list[str], c: float):
        if not positives or not negatives:
            raise ValueError(
                "classifier: training needs exemplars (positives) and near_misses (negatives)"
            )
        self.encoder = encoder
        self.c = c
        self.x = encoder.encode(positives + negatives)
        self.y = np.array([1] * len(positives) + [0] * len(negatives))
        self.model = self._fit(self.x, self.y)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(class_weight="balanced", C=self.c, max_iter=1000)
        model.fit(x, y)
        return model

    def predict_held_out(self, cal: CalibrationSet, folds: int = 5) -> np.ndarray:
        """Each calibration text's probability from a model fitted without the fold of the
        positive or near-miss it was made from (k-fold: a refit per text would cost seconds)."""
        n_pos = int(self.y.sum())
        n_neg = len(self.y) - n_pos
        fold_of_row = np.concatenate([np.arange(n_pos) % folds, np.arange(n_neg) % folds])
        fold_of_text = np.asarray([
            p % folds if p >= 0 else q % folds if q >= 0 else -1
            for p, q in zip(cal.pos, cal.neg, strict=True)
        ])
        x = self.encoder.encode(cal.texts).astype(np.float64)
        out = _proba(x, self.model)
        for f in range(folds):
            texts = fold_of_text == f
            keep = fold_of_row != f
            if not texts.any() or len(set(self.y[keep].tolist())) < 2:
                continue
            out[texts] = _proba(x[texts], self._fit(self.x[keep], self.y[keep]))
        return out

    def predict(self, texts: list[str]) -> np.ndarray:
        # The logistic function row by row in float64 rather than predict_proba: its float32
        # matrix product gave a text another probability (by 2e-7) in a batch of 20 than
        # alone, and a window's score must not depend on its batch.
        return _proba(self.encoder.encode(texts).astype(np.float64), self.model)


def _proba(x: np.ndarray, model: Any) -> np.ndarray:
    w = model.coef_[0].astype(np.float64)
    z = (x * w).sum(axis=1) + float(model.intercept_[0])
    proba: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return proba


class HFSequenceClassifier:
    def __init__(self, model_dir: Path, label: str, max_length: int, batch_size: int = 1):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not model_dir.is_dir():
            raise ValueError(f"classifier: model_dir {model_dir} is not a directory")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
        self.model.eval()
        labels = {str(k): int(v) for k, v in (self.model.config.label2id or {}).items()}
        if label not in labels:
            raise ValueError(
                f"classifier: label {label!r} not in {model_dir} labels {sorted(labels)}"
            )
        self.index = labels[label]
        # Longer windows than the model's positions would crash it; truncate instead.
        limits = [max_length, getattr(self.model.config, "max_position_embeddings", None)]
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and model_max < 1_000_000:
            limits.append(model_max)
        self.max_length = min(x for x in limits if isinstance(x, int) and x > 0)
        # 1: padding makes a text's logits depend on its batch; see EmbeddingLogReg.predict.
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def predict(self, texts: list[str]) -> np.ndarray:
        out = []
        with self._lock, self.torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                logits = self.model(**batch).logits
                out.append(logits.softmax(-1)[:, self.index].float().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class Classifier(WindowedFilter):
    name = "classifier"

    class Options(WindowOptions):
        threshold: float = Field(0.6, gt=0.0, lt=1.0)
        #: A local HF sequence-classification model (relative paths: to the policy file).
        model_dir: Path | None = None
        label: str | None = None
        max_length: int = Field(256, ge=8)
        #: Inverse regularisation strength of the logistic regression.
        c: float = Field(10.0, gt=0.0)
        use_corpus: bool = True

        @model_validator(mode="after")
        def _label_with_model(self) -> Classifier.Options:
            if (self.model_dir is None) != (self.label is None):
                raise ValueError("classifier: model_dir and label go together")
            return self

    options: Classifier.Options

    def __init__(self, backend: Backend, options: Classifier.Options):
        self.backend = backend
        self.options = options

    @classmethod
    def from_policy(cls, data: PolicyData, resources: Any, options: FilterOptions) -> Classifier:
        assert isinstance(options, cls.Options)
        backend: Backend
        if options.model_dir is not None:
            model_dir = options.model_dir
            if not model_dir.is_absolute():
                model_dir = data.base_dir / model_dir
            assert options.label is not None
            backend = HFSequenceClassifier(model_dir, options.label, options.max_length)
        else:
            positives = list(data.exemplars)
            if options.use_corpus and data.corpus.strip():
                positives += corpus_chunks(data.corpus)
            try:
                backend = EmbeddingLogReg(
                    resources.encoder, positives, list(data.near_misses), options.c
                )
            except ValueError as exc:
                raise ValueError(f"policy {data.name!r}: {exc}") from exc
            flt = cls(backend, options)
            # The screen scores against the positives the classifier was trained on.
            key = {
                "positives": text_digest(positives),
                "near_misses": text_digest(data.near_misses),
            }
            flt.attach_screen(resources, data.name, positives, data.near_misses, key)
            return flt
        return cls(backend, options)

    def calibration_flags(self, cal: CalibrationSet) -> np.ndarray:
        assert isinstance(self.backend, EmbeddingLogReg)
        flags: np.ndarray = self.backend.predict_held_out(cal) >= self.options.threshold
        return flags

    def judge(self, texts: list[str]) -> list[Verdict]:
        probs = self.backend.predict(texts)
        return [Verdict(p >= self.options.threshold, p) for p in probs.tolist()]

    def reason(self, score: float) -> str:
        return f"classifier: p={score:.2f} on policy target"


FILTER = Classifier
