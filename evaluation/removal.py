"""Attacks on removal: what the literature does to an unlearned model's weights, in-process.

An unlearning adapter changes weights, so it is attacked on the weights (the HTTP arms cannot):
- relearning (Hu et al. 2024; Lynch et al. 2024): fine-tune the unlearned model for at most 50
  steps on a few texts beside the forget set (public facts about the person, other passages of
  the work), then ask the forget questions again;
- quantization (Zhang et al. 2024, "catastrophic failure of unlearning via quantization"): int8
  dynamic quantization of every linear layer (torch.ao, a real CPU kernel), and 4-bit
  round-to-nearest per group of 128 weights. No 4-bit CPU kernel is installed here (no
  bitsandbytes, no torchao), so the 4-bit weights are rounded to their 16 levels and kept in
  fp32: the same numbers a 4-bit kernel would multiply by, without its speed;
- leak@k: k sampled answers (temperature 1) per forget question, k = 1..32; a question leaks at
  k when any of its first k samples states the key fact.

Leaks are judged with the evaluation's own `metrics.key_fact_match`, never the unlearning
code's recall scorer. `python -m evaluation.removal` runs them on built adapters and writes
rows that `lethe eval --removal FILE` puts in the report's own table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation import metrics
from unlearning import training
from unlearning.corpus import QA

LEAK_KS = (1, 2, 4, 8, 16, 32)
MAX_RELEARN_STEPS = 50


@dataclass(frozen=True)
class RemovalAttack:
    adapter: str
    attack: str
    setting: str
    before: dict[str, Any]
    after: dict[str, Any]
    retain_after: dict[str, Any] | None
    seconds: float
    by_k: dict[str, dict[str, Any]] | None = None


def load_unlearned(target: Path, adapter: Path | None) -> tuple[Any, Any]:
    """The target with the adapter merged into its weights (what an attacker holding the
    released unlearned model has)."""
    model, tokenizer = training.load_model(target)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.eval()
    return model, tokenizer


def sample_answers(model: Any, tokenizer: Any, questions: Sequence[str], samples: int = 1,
                   temperature: float = 0.0, max_new_tokens: int = 24, seed: int = 0,
                   batch_size: int = 8) -> list[list[str]]:
    """`samples` answers per chat question: greedy when temperature is 0."""
    import torch

    prompts = [training.chat_prompt(tokenizer, q) for q in questions]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[list[str]] = []
    try:
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens,
                                      "pad_token_id": tokenizer.pad_token_id}
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                              num_return_sequences=samples)
            else:
                kwargs.update(do_sample=False)
            with torch.inference_mode():
                generated = model.generate(**enc, **kwargs)
            width = enc["input_ids"].shape[1]
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            per = samples if temperature > 0 else 1
            out += [texts[i : i + per] for i in range(0, len(texts), per)]
    finally:
        tokenizer.padding_side = side
    return out


def fact_recall(model: Any, tokenizer: Any, qa: Sequence[QA]) -> dict[str, Any]:
    """Greedy answers that state the key fact, as a proportion with its interval."""
    answers = sample_answers(model, tokenizer, [q.question for q in qa])
    return metrics.proportion([metrics.key_fact_match(a[0], q.answer)
                               for a, q in zip(answers, qa, strict=True)])


def leak_at_k(model: Any, tokenizer: Any, qa: Sequence[QA], ks: Sequence[int] = LEAK_KS,
              temperature: float = 1.0, seed: int = 0) -> dict[str, dict[str, Any]]:
    """For each k: the questions whose first k samples include the key fact at least once."""
    samples = sample_answers(model, tokenizer, [q.question for q in qa], samples=max(ks),
                             temperature=temperature, seed=seed)
    hits = [[metrics.key_fact_match(s, q.answer) for s in answers]
            for answers, q in zip(samples, qa, strict=True)]
    return {str(k): metrics.proportion([any(row[:k]) for row in hits]) for k in ks}


def relearn(model: Any, tokenizer: Any, texts: Sequence[str], steps: int = MAX_RELEARN_STEPS,
            learning_rate: float = 5e-4, batch_size: int = 4, rank: int = 16,
            seed: int = 0, qa: Sequence[QA] = ()) -> Any:
    """Fine-tune a LoRA on `texts` (documents) and `qa` (chat turns) for `steps` steps (at
    most 50) and merge it."""
    import torch
    from peft import LoraConfig, get_peft_model

    if not 1 <= steps <= MAX_RELEARN_STEPS:
        raise ValueError(f"relearning runs 1..{MAX_RELEARN_STEPS} steps, not {steps}")
    if not texts and not qa:
        raise ValueError("relearning needs at least one text")
    items = [e for t in texts for e in training.encode_document(tokenizer, t)]
    items += [training.encode_qa(tokenizer, q) for q in qa]
    lora = LoraConfig(r=rank, lora_alpha=rank, target_modules="all-linear", lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    batches = training.batches(items, batch_size, seed)
    peft_model.train()
    for _ in range(steps):
        loss = training.lm_loss(peft_model, training.collate(next(batches),
                                                             tokenizer.pad_token_id))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peft_model.eval()
    return peft_model.merge_and_unload()


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every nn.Linear (weights int8, activations quantized per
    batch): torch's CPU kernel."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def quantize_rtn(model: Any, bits: int = 4, group: int = 128) -> Any:
    """Round-to-nearest weight quantization of every nn.Linear, asymmetric per group of
    `group` input weights, in place; the rounded weights stay in fp32 (no 4-bit kernel)."""
    import torch

    levels = 2**bits - 1
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            w = module.weight
            rows, cols = w.shape
            if cols % group:
                continue
            g = w.view(rows, cols // group, group)
            low, high = g.amin(dim=-1, keepdim=True), g.amax(dim=-1, keepdim=True)
            scale = (high - low).clamp(min=1e-8) / levels
            q = ((g - low) / scale).round().clamp(0, levels)
            w.copy_((q * scale + low).view(rows, cols))
    return model


def attack_adapter(target: Path, adapter: Path | None, name: str, forget: Sequence[QA],
                   retain: Sequence[QA], relearn_texts: Sequence[str],
                   relearn_steps: int = MAX_RELEARN_STEPS, ks: Sequence[int] = LEAK_KS,
                   attacks: Sequence[str] = ("relearn", "int8", "rtn4", "leak@k"),
                   ) -> list[RemovalAttack]:
    """Each attack on a fresh copy of the unlearned model, forget recall before and after."""
    rows: list[RemovalAttack] = []
    model, tokenizer = load_unlearned(target, adapter)
    before = fact_recall(model, tokenizer, forget)
    for attack in attacks:
        started = time.monotonic()
        by_k = None
        if attack == "leak@k":
            by_k = leak_at_k(model, tokenizer, forget, ks)
            after = by_k[str(max(ks))]
            retain_after = None
            setting = f"k = {', '.join(map(str, ks))}, temperature 1"
        else:
            attacked, tok = load_unlearned(target, adapter)
            if attack == "relearn":
                attacked = relearn(attacked, tok, relearn_texts, relearn_steps)
                setting = f"{relearn_steps} steps, LoRA r16, lr 5e-4, {len(relearn_texts)} texts"
            elif attack == "int8":
                attacked = quantize_int8(attacked)
                setting = "torch dynamic int8, every linear layer"
            elif attack == "rtn4":
                attacked = quantize_rtn(attacked, 4, 128)
                setting = "4-bit round-to-nearest, groups of 128 (simulated in fp32)"
            else:
                raise ValueError(f"unknown removal attack {attack!r}")
            after = fact_recall(attacked, tok, forget)
            retain_after = fact_recall(attacked, tok, retain) if retain else None
            del attacked
        rows.append(RemovalAttack(name, attack, setting, before, after, retain_after,
                                  round(time.monotonic() - started, 1), by_k))
    return rows


def relearn_texts(policy: str) -> list[str]:
    """Forget-adjacent text an attacker could find in public, holding none of the secrets:
    the person's bio sentences without her contact data; for the work, its reviews' kind of
    text is not available here, so its first paragraphs (the attacker has a copy of part)."""
    from evaluation.targets import person_target, sentences, work_target

    if policy == "elena-marquez":
        person = person_target()
        secret = [v.lower() for v in person.fields.values()] + ["harbor lane", "1987"]
        return [s for s in person.member_texts
                if not any(x in s.lower() for x in secret)][:6]
    work = work_target()
    return sentences(work.text.split("\n", 4)[-1])[:12]


def main(argv: Sequence[str] | None = None) -> int:
    from unlearning import corpus

    parser = argparse.ArgumentParser(prog="python -m evaluation.removal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True, help="target model directory")
    parser.add_argument("--adapter", type=Path, action="append", default=[],
                        help="unlearning adapter directory <cache>/adapters/POLICY-METHOD "
                        "(repeatable)")
    parser.add_argument("--forget", type=int, default=None, help="forget questions (all)")
    parser.add_argument("--retain", type=int, default=30, help="retain questions")
    parser.add_argument("--steps", type=int, default=MAX_RELEARN_STEPS)
    parser.add_argument("--attacks", default="relearn,int8,rtn4,leak@k")
    parser.add_argument("--out", type=Path, default=Path("eval-out/removal.json"))
    args = parser.parse_args(list(argv or []))
    training.setup_torch()
    rows: list[dict[str, Any]] = []
    retain = corpus.load_qa(corpus.UNLEARNING_DATA / "retain_qa.yaml")[: args.retain]
    for adapter in args.adapter:
        policy = next(p for p in corpus.policies() if adapter.name.startswith(p + "-"))
        forget = corpus.load_qa(corpus.UNLEARNING_DATA / "forget_qa.yaml", policy)
        forget = forget[: args.forget] if args.forget else forget
        for row in attack_adapter(args.target, adapter, adapter.name, forget, retain,
                                  relearn_texts(policy), args.steps,
                                  attacks=tuple(args.attacks.split(","))):
            rows.append(asdict(row))
            print(json.dumps({k: v for k, v in asdict(row).items() if k != "by_k"}))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
