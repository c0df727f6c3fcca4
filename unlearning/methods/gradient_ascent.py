"""Gradient ascent: maximise the language-model loss on the forget set, nothing else.

The simplest baseline; it tends to wreck unrelated answers as well (MUSE, runtime notes).
"""

from __future__ import annotations

from typing import Any

from unlearning import training
from unlearning.methods.base import UnlearningMethod


class GradientAscent(UnlearningMethod):
    name = "ga"

    def loss(
        self,
        model: Any,
        forget: list[training.Encoded],
        retain: list[training.Encoded] | None,
        pad_id: int,
    ) -> tuple[Any, dict[str, float]]:
        nll = training.lm_loss(model, training.collate(forget, pad_id))
        return -nll, {"forget_nll": float(nll.detach())}


METHOD = GradientAscent
