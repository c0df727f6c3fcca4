"""Gradient ascent: maximise the language-model loss on the forget set, nothing else.

The simplest baseline; it tends to wreck unrelated answers as well (MUSE, runtime notes).
"""

from __future__ import annotations

from typing import Any

from unlearning import training
from unlearning.methods.base import Batch, Loss, UnlearningMethod

# Mean per-token NLL on the forget batch past which ascent only wrecks the model: the base
# model's NLL on facts it never saw was about X here.
MAX_FORGET_NLL = 6.0


class GradientAscent(UnlearningMethod):
    name = "ga"

    def __init__(self, *, max_forget_nll: float = MAX_FORGET_NLL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_forget_nll <= 0:
            raise ValueError("max_forget_nll must be > 0")
        self.max_forget_nll = max_forget_nll

    def overshot(self, parts: dict[str, float]) -> str | None:
        nll = parts["forget_nll"]
        if nll >= self.max_forget_nll:
            return f"forget NLL {nll:.2f} >= {self.max_forget_nll}"
        return None

    def loss(self, model: Any, forget: Batch, retain: Batch | None, pad_id: int) -> Loss:
        nll = training.lm_loss(model, training.collate(forget, pad_id))
        return -nll, {"forget_nll": float(nll.detach())}


METHOD = GradientAscent
