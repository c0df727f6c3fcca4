"""The loop every unlearning method shares: LoRA on the target, forget/retain batches, recall
before and after, an adapter directory vLLM can load, and its manifest.

A method only says how a step's loss is made from a forget batch and a retain batch, and
when its loss has gone far enough (`overshot`). Training stops at the first of: `steps`;
a recall check (every `check_every` steps, greedy answers to the forget probes) at or below
`stop_recall`; the method's loss bound. Unlearning past that point buys no more forgetting
and costs utility: the ascent keeps pushing once the facts are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from filters.cache import staged_dir
from unlearning import corpus, manifest, recall, training

#: A batch of encoded examples, and a step's loss with its named parts (logged, and read by
#: `overshot`).
Batch = list[training.Encoded]
Loss = tuple[Any, dict[str, float]]

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_RANK = 64


@dataclass(frozen=True)
class UnlearnResult:
    out: Path
    manifest: manifest.Manifest
    forget_before: recall.Recall
    forget_after: recall.Recall
    retain_before: recall.Recall
    retain_after: recall.Recall
    steps: int
    stop_reason: str


class UnlearningMethod:
    name: ClassVar[str] = ""
    uses_retain: ClassVar[bool] = False

    def __init__(
        self,
        *,
        steps: int = 40,
        learning_rate: float = 5e-4,
        rank: int = 8,
        alpha: int = 16,
        batch_size: int = 4,
        retain_batch_size: int = 8,
        check_every: int = 2,
        stop_recall: float = 0.2,
        seed: int = 0,
    ) -> None:
        if min(steps, batch_size, retain_batch_size, check_every) < 1:
            raise ValueError("steps, batch_size, retain_batch_size, check_every must be >= 1")
        if not 0.0 <= stop_recall < 1.0:
            raise ValueError("stop_recall must be in [0, 1)")
        if not 1 <= rank <= MAX_RANK:
            raise ValueError(f"rank must be in 1..{MAX_RANK} (the engine's --max-lora-rank)")
        if learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        self.steps = steps
        self.learning_rate = learning_rate
        self.rank = rank
        self.alpha = alpha
        self.batch_size = batch_size
        self.retain_batch_size = retain_batch_size
        self.check_every = check_every
        self.stop_recall = stop_recall
        self.seed = seed

    def hyperparameters(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not callable(v)}

    # --- what a method defines -------------------------------------------------------------

    def prepare(self, model: Any, forget_items: list[training.Encoded], pad_id: int) -> None:
        """Hook run once before training, with the adapter in place (NPO's reference pass)."""

    def loss(self, model: Any, forget: Batch, retain: Batch | None, pad_id: int) -> Loss:
        raise NotImplementedError

    def overshot(self, parts: dict[str, float]) -> str | None:
        """A reason to stop when this step's loss parts say the forget set is gone."""
        return None

    # --- the shared loop -------------------------------------------------------------------

    def run(
        self,
        target: Path,
        policy: str,
        out: Path,
        *,
        forget: corpus.TextSet | None = None,
        retain: corpus.TextSet | None = None,
        say: Callable[[str], None] = print,
    ) -> UnlearnResult:
        """Train an adapter on `target` that removes `policy`'s forget set; save it to `out`."""
        import torch
        from peft import LoraConfig, get_peft_model
        from tqdm import tqdm

        forget = forget or corpus.forget_set(policy)
        retain = retain or corpus.retain_set()
        training.setup_torch(seed=self.seed)
        model, tokenizer = training.load_model(target)
        pad_id = tokenizer.pad_token_id

        forget_before = recall.measure(model, tokenizer, forget)
        retain_before = recall.measure(model, tokenizer, retain)
        say(f"{self.name}: forget recall before {forget_before.line()}")
        say(f"{self.name}: retain recall before {retain_before.line()}")

        lora = LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            target_modules=TARGET_MODULES,
            lora_dropout=0.0,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        forget_items = training.encode_set(tokenizer, forget)
        # The retain loss never sees the retain probe questions: they measure retention.
        retain_items = training.encode_set(tokenizer, retain.without_probes())
        if not forget_items:
            raise ValueError(f"the forget set for {policy!r} is empty")
        self.prepare(model, forget_items, pad_id)

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)
        forget_batches = training.batches(forget_items, self.batch_size, self.seed)
        retain_batches = training.batches(retain_items, self.retain_batch_size, self.seed + 1)
        parts: dict[str, float] = {}
        history: list[dict[str, float]] = []
        stop_reason = f"max steps ({self.steps})"
        steps = 0
        started = time.monotonic()
        model.train()
        with tqdm(total=self.steps, desc=f"{self.name} {policy}", unit="step") as bar:
            while steps < self.steps:
                retain_batch = next(retain_batches) if self.uses_retain and retain_items else None
                loss, parts = self.loss(model, next(forget_batches), retain_batch, pad_id)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()})
                reason = self.overshot(parts)
                if reason is None and steps % self.check_every == 0 and steps < self.steps:
                    check = recall.measure(model, tokenizer, forget)
                    history.append({"step": steps, "forget": round(check.score, 4)})
                    bar.set_postfix({"forget": f"{check.score:.0%}"})
                    if check.score <= self.stop_recall:
                        reason = f"forget recall {check.score:.0%} <= {self.stop_recall:.0%}"
                if reason is not None:
                    stop_reason = reason
                    break
        seconds = time.monotonic() - started
        model.eval()
        say(f"{self.name}: stopped after {steps} steps: {stop_reason}")

        forget_after = recall.measure(model, tokenizer, forget)
        retain_after = recall.measure(model, tokenizer, retain)
        say(f"{self.name}: forget recall after {forget_after.line()}")
        say(f"{self.name}: retain recall after {retain_after.line()}")
        say(f"{self.name}: {steps} steps in {seconds:.0f} s")

        record = manifest.Manifest(
            kind="adapter",
            method=self.name,
            policy=policy,
            hyperparameters={**self.hyperparameters(), "target_modules": TARGET_MODULES},
            stop_reason=stop_reason,
            checks=history,
            forget_sha256=forget.sha256,
            retain_sha256=retain.sha256,
            base_model=str(target),
            base_model_sha256=training.weights_sha256(target),
            training_seconds=round(seconds, 1),
            steps=steps,
            final_losses={k: round(v, 4) for k, v in parts.items()},
            recall_before={"forget": forget_before.summary(), "retain": retain_before.summary()},
            recall_after={"forget": forget_after.summary(), "retain": retain_after.summary()},
        )
        _save_adapter(model, out, record)
        say(f"{self.name}: adapter saved to {out}")
        return UnlearnResult(
            out,
            record,
            forget_before,
            forget_after,
            retain_before,
            retain_after,
            steps,
            stop_reason,
        )


def _save_adapter(model: Any, out: Path, record: manifest.Manifest) -> None:
    with staged_dir(out) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        record.write(staging)
