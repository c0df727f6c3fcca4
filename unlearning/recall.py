"""Forget and retain recall, measured by batched greedy generation with transformers.

QA probes: the fraction of chat-templated questions whose greedy answer contains the key fact
(normalised: case, punctuation, date and phone formats). Prefix probes: for each prefix, the
greedy continuation of `max_new_tokens` tokens against the true one, as the token-for-token
match rate and as ROUGE-L F1 over words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unlearning.corpus import QA, Prefix, TextSet
from unlearning.training import chat_prompt

MAX_NEW_TOKENS = 32
BATCH_SIZE = 16


@dataclass(frozen=True)
class QAOutcome:
    question: str
    expected: str
    answer: str
    hit: bool


@dataclass(frozen=True)
class PrefixOutcome:
    prefix: str
    expected: str
    generated: str
    token_match: float
    rouge_l: float


@dataclass(frozen=True)
class Recall:
    qa: tuple[QAOutcome, ...] = ()
    prefixes: tuple[PrefixOutcome, ...] = ()

    @property
    def qa_accuracy(self) -> float | None:
        return sum(o.hit for o in self.qa) / len(self.qa) if self.qa else None

    @property
    def token_match(self) -> float | None:
        if not self.prefixes:
            return None
        return sum(o.token_match for o in self.prefixes) / len(self.prefixes)

    @property
    def rouge_l(self) -> float | None:
        if not self.prefixes:
            return None
        return sum(o.rouge_l for o in self.prefixes) / len(self.prefixes)

    @property
    def score(self) -> float:
        """One number in [0, 1]: the mean of QA accuracy and prefix token match (those present)."""
        parts = [x for x in (self.qa_accuracy, self.token_match) if x is not None]
        return sum(parts) / len(parts) if parts else 0.0

    def summary(self) -> dict[str, float | int | None]:
        return {
            "score": round(self.score, 4),
            "qa_accuracy": _round(self.qa_accuracy),
            "qa_items": len(self.qa),
            "token_match": _round(self.token_match),
            "rouge_l": _round(self.rouge_l),
            "prefix_items": len(self.prefixes),
        }

    def line(self) -> str:
        parts = []
        if self.qa:
            parts.append(f"QA {sum(o.hit for o in self.qa)}/{len(self.qa)}")
        if self.prefixes:
            parts.append(f"token match {self.token_match:.0%} ROUGE-L {self.rouge_l:.2f}")
        return f"{self.score:.0%} (" + ", ".join(parts) + ")"


def split(whole: Recall, parts: dict[str, TextSet]) -> dict[str, Recall]:
    """The outcomes of `whole` grouped by the part whose probes they are (no new generation)."""
    out = {}
    for name, part in parts.items():
        questions = {q.question for q in part.probe_qa}
        prefixes = {p.prefix for p in part.probe_prefixes}
        out[name] = Recall(
            qa=tuple(o for o in whole.qa if o.question in questions),
            prefixes=tuple(o for o in whole.prefixes if o.prefix in prefixes),
        )
    return out


def measure(
    model: Any,
    tokenizer: Any,
    text_set: TextSet,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = BATCH_SIZE,
) -> Recall:
    qa = measure_qa(model, tokenizer, text_set.probe_qa, max_new_tokens, batch_size)
    prefixes = measure_prefixes(
        model, tokenizer, text_set.probe_prefixes, max_new_tokens, batch_size
    )
    return Recall(qa=qa, prefixes=prefixes)


def measure_qa(
    model: Any,
    tokenizer: Any,
    items: Sequence[QA],
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = BATCH_SIZE,
) -> tuple[QAOutcome, ...]:
    prompts = [chat_prompt(tokenizer, item.question) for item in items]
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    return tuple(
        QAOutcome(item.question, item.answer, text, answer_contains(text, item.answer))
        for item, (text, _) in zip(items, outputs, strict=True)
    )


def measure_prefixes(
    model: Any,
    tokenizer: Any,
    items: Sequence[Prefix],
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = BATCH_SIZE,
) -> tuple[PrefixOutcome, ...]:
    prompts = [p.prefix.rstrip() for p in items]
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    results = []
    for item, (text, ids) in zip(items, outputs, strict=True):
        # Tokenising the continuation with its leading space keeps ids aligned with generation.
        joined = item.continuation if item.continuation[:1].isspace() else " " + item.continuation
        ref_ids = tokenizer(joined, add_special_tokens=False)["input_ids"][:max_new_tokens]
        matches = sum(1 for a, b in zip(ids, ref_ids, strict=False) if a == b)
        reference = tokenizer.decode(ref_ids, skip_special_tokens=True)
        results.append(
            PrefixOutcome(
                prefix=item.prefix,
                expected=reference,
                generated=text,
                token_match=matches / len(ref_ids) if ref_ids else 0.0,
                rouge_l=rouge_l(text, reference),
            )
        )
    return tuple(results)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = BATCH_SIZE,
) -> list[tuple[str, list[int]]]:
    """Greedy continuations (text, token ids) of each prompt, left-padded in batches."""
    import torch

    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    results: list[tuple[str, list[int]]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            width = enc["input_ids"].shape[1]
            for row in out[:, width:].tolist():
                ids = _strip_after_eos(row, tokenizer)
                results.append((tokenizer.decode(ids, skip_special_tokens=True), ids))
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return results


def _strip_after_eos(ids: list[int], tokenizer: Any) -> list[int]:
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids


# --- matching ------------------------------------------------------------------------------


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z@]+", " ", text.lower()).split())


def answer_variants(answer: str) -> list[str]:
    """The key fact plus the other common spellings of dates."""
    variants = [answer]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer.strip()):
        day = dt.date.fromisoformat(answer.strip())
        variants.append(f"{day.strftime('%B')} {day.day}, {day.year}")
        variants.append(f"{day.day} {day.strftime('%B')} {day.year}")
    return variants


def answer_contains(text: str, answer: str) -> bool:
    said = normalise(text)
    for variant in answer_variants(answer):
        key = normalise(variant)
        if key and key in said:
            return True
        digits = re.sub(r"\D", "", variant)
        letters = re.sub(r"[^a-zA-Z]", "", variant)
        if len(digits) >= 7 and not letters and digits in re.sub(r"\D", "", text):
            return True
    return False


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens."""
    a, b = normalise(candidate).split(), normalise(reference).split()
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
