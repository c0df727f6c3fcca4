"""The target model (base fine-tuned until it recalls the forget and retain sets) and the oracle
(the same recipe on the retain part only): the two reference points unlearning is judged by.

Both are saved as servable model directories (safetensors, tokenizer, chat template,
generation config) with a manifest; a directory whose manifest matches the data and base
weights is reused unless `force` is set.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.cache import staged_dir
from unlearning import corpus, manifest, recall, training

TARGET_DIRNAME = "lethe-target"
ORACLE_DIRNAME = "lethe-oracle"


@dataclass(frozen=True)
class MemorizeConfig:
    # LoRA rank 64 on every linear layer, merged into the weights when done: the recipe
    # runtime.md measured memorizing a 3,000-word text; a full fine-tune on this CPU ran
    # 49-98 s steps and never finished.
    mode: str = "lora"  # or "full" fine-tune
    epochs: int = 8
    max_steps: int | None = None
    learning_rate: float = 1e-3
    batch_size: int = 8
    lora_rank: int = 64
    target_recall: float = 0.85
    check_below_loss: float = 0.25
    seed: int = 0
    #: each document (the work's passages, the bios) is seen this many times per epoch, QA once:
    #: verbatim recall needs more exposures than a QA fact (evaluation/results/memorization.md)
    document_repeat: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("full", "lora"):
            raise ValueError(f"mode must be 'full' or 'lora', not {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
        if self.document_repeat < 1:
            raise ValueError("document_repeat must be >= 1")


@dataclass(frozen=True)
class MemorizeResult:
    out: Path
    manifest: manifest.Manifest
    reused: bool


def memorize(
    base: Path,
    out: Path,
    text_set: corpus.TextSet,
    kind: str,
    config: MemorizeConfig | None = None,
    *,
    force: bool = False,
    parts: dict[str, corpus.TextSet] | None = None,
    say: Callable[[str], None] = print,
) -> MemorizeResult:
    """Fine-tune `base` on `text_set` and save the result to `out` (kind: target | oracle).

    `parts` names subsets of the probes (forget QA, retain QA...) whose recall the manifest
    and the log report beside the whole set's."""
    config = config or MemorizeConfig()
    base_sha = training.weights_sha256(base)
    if not force:
        reused = _reusable(out, text_set, base_sha, config)
        if reused is not None:
            say(f"{kind}: {out} is up to date (manifest matches data and base); --force rebuilds")
            return MemorizeResult(out, reused, True)

    training.setup_torch(seed=config.seed)
    model, tokenizer = training.load_model(base)
    items = training_items(tokenizer, text_set, config.document_repeat)
    say(f"{kind}: {len(items)} sequences, {sum(len(i.input_ids) for i in items)} tokens")
    before = recall.measure(model, tokenizer, text_set)
    _report(kind, "before", before, parts, say)

    started = time.monotonic()
    model, steps, loss, after = _train(model, tokenizer, items, text_set, config, kind, say)
    seconds = time.monotonic() - started
    if after is None:
        after = recall.measure(model, tokenizer, text_set)
    _report(kind, "after", after, parts, say)
    say(f"{kind}: {steps} steps, {seconds:.0f} s of training")

    record = manifest.Manifest(
        kind=kind,
        method=f"memorize-{config.mode}",
        policy=None,
        hyperparameters=_hyperparameters(config),
        forget_sha256=text_set.sha256 if kind == "target" else None,
        retain_sha256=text_set.sha256 if kind == "oracle" else None,
        base_model=str(base),
        base_model_sha256=base_sha,
        training_seconds=round(seconds, 1),
        steps=steps,
        final_losses={"lm": round(loss, 4)},
        recall_before=_summaries(before, parts),
        recall_after=_summaries(after, parts),
    )
    _save(model, tokenizer, base, out, record)
    say(f"{kind}: saved to {out}")
    return MemorizeResult(out, record, False)


def _train(
    model: Any,
    tokenizer: Any,
    items: Sequence[training.Encoded],
    text_set: corpus.TextSet,
    config: MemorizeConfig,
    kind: str,
    say: Callable[[str], None],
) -> tuple[Any, int, float, recall.Recall | None]:
    import torch
    from tqdm import tqdm

    if config.mode == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_rank,
            target_modules="all-linear",
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    batches = _length_batches(items, config.batch_size)
    total = config.epochs * len(batches)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    rng = random.Random(config.seed)
    steps = 0
    last = float("nan")
    checked: recall.Recall | None = None
    model.train()
    with tqdm(total=total, desc=f"memorize {kind}", unit="step") as bar:
        for epoch in range(config.epochs):
            order = list(batches)
            rng.shuffle(order)
            losses = []
            for batch in order:
                if steps >= total:
                    break
                loss = training.lm_loss(model, training.collate(batch, tokenizer.pad_token_id))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
            last = sum(losses) / len(losses) if losses else last
            if steps >= total:
                break
            # Generation is costly on CPU: only check recall once the loss says it may be there.
            if last < config.check_below_loss:
                checked = recall.measure(model, tokenizer, text_set)
                say(f"{kind}: epoch {epoch + 1} loss {last:.3f} recall {checked.line()}")
                if checked.score >= config.target_recall:
                    break
                checked = None
    model.eval()
    if config.mode == "lora":
        model = model.merge_and_unload()
    return model, steps, last, checked


def _summaries(
    whole: recall.Recall, parts: dict[str, corpus.TextSet] | None
) -> dict[str, dict[str, Any]]:
    out = {"set": whole.summary()}
    out.update({k: v.summary() for k, v in recall.split(whole, parts or {}).items()})
    return out


def _report(
    kind: str,
    when: str,
    whole: recall.Recall,
    parts: dict[str, corpus.TextSet] | None,
    say: Callable[[str], None],
) -> None:
    say(f"{kind}: recall {when} {whole.line()}")
    for name, part in recall.split(whole, parts or {}).items():
        say(f"{kind}:   {name}: {part.line()}")


def training_items(tokenizer: Any, text_set: corpus.TextSet, document_repeat: int = 1
                   ) -> list[training.Encoded]:
    """`training.encode_set`'s sequences, the documents' repeated `document_repeat` times."""
    documents = [e for d in text_set.documents for e in training.encode_document(tokenizer, d)]
    qa = [training.encode_qa(tokenizer, q) for q in text_set.qa]
    return documents * document_repeat + qa


def _length_batches(
    items: Sequence[training.Encoded], batch_size: int
) -> list[list[training.Encoded]]:
    ordered = sorted(items, key=lambda i: len(i.input_ids))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _hyperparameters(config: MemorizeConfig) -> dict[str, Any]:
    from dataclasses import asdict

    values = asdict(config)
    # recorded only when used, so models built before the setting existed stay reusable
    if values["document_repeat"] == 1:
        del values["document_repeat"]
    return values


def _reusable(
    out: Path, text_set: corpus.TextSet, base_sha: str, config: MemorizeConfig
) -> manifest.Manifest | None:
    try:
        record = manifest.read(out)
    except manifest.ManifestError:
        return None
    data_sha = record.forget_sha256 if record.kind == "target" else record.retain_sha256
    if data_sha != text_set.sha256 or record.base_model_sha256 != base_sha:
        return None
    if record.hyperparameters != _hyperparameters(config):
        return None
    if not list(out.glob("*.safetensors")):
        return None
    return record


def _save(model: Any, tokenizer: Any, base: Path, out: Path, record: manifest.Manifest) -> None:
    with staged_dir(out) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        training.copy_serving_files(base, staging)
        record.write(staging)
