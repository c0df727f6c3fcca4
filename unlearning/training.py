"""Shared pieces of every training loop: loading, tokenising, batching, saving."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filters.cache import sha256_file
from unlearning.corpus import QA, TextSet

MAX_LEN = 256


@dataclass(frozen=True)
class Encoded:
    """One training sequence; labels are -100 where no loss is taken (the chat prompt)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def torch_threads() -> int:
    """LETHE_TORCH_THREADS, else every core on a near-idle machine and one otherwise: with
    other processes running, OpenMP barriers made a 2-thread training step 8x slower than a
    1-thread one here (145 s against 17 s), and a run that started at load 1.99 on 2 cores
    ran 50 s steps for 8 s of work once a vLLM server woke up beside it."""
    configured = os.environ.get("LETHE_TORCH_THREADS")
    if configured:
        return max(1, int(configured))
    cores = os.cpu_count() or 1
    return cores if os.getloadavg()[0] < 0.25 * cores else 1


def setup_torch(threads: int | None = None, seed: int = 0) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads or torch_threads())
    torch.manual_seed(seed)
    random.seed(seed)


def load_model(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a model directory (no config.json); "
            "run `lethe models prepare` or `lethe unlearning memorize` first"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, tokenizer


def chat_prompt(tokenizer: Any, question: str) -> str:
    text: str = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return text


def encode_document(tokenizer: Any, text: str, max_len: int = MAX_LEN) -> list[Encoded]:
    """A plain document, split into windows of at most max_len tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out = []
    for start in range(0, len(ids), max_len):
        window = tuple(ids[start : start + max_len])
        if len(window) > 1:
            out.append(Encoded(window, window))
    return out


def encode_qa(tokenizer: Any, item: QA, max_len: int = MAX_LEN) -> Encoded:
    """A chat turn; the loss covers the answer and the end-of-turn token only."""
    prompt = tokenizer(chat_prompt(tokenizer, item.question), add_special_tokens=False)
    answer = tokenizer(item.answer + end_of_turn(tokenizer), add_special_tokens=False)
    p_ids, a_ids = list(prompt["input_ids"]), list(answer["input_ids"])
    ids = (p_ids + a_ids)[:max_len]
    labels = ([-100] * len(p_ids) + a_ids)[:max_len]
    return Encoded(tuple(ids), tuple(labels))


def end_of_turn(tokenizer: Any) -> str:
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        if token in tokenizer.get_vocab():
            return token
    eos: str = tokenizer.eos_token
    return eos


def encode_set(tokenizer: Any, text_set: TextSet, max_len: int = MAX_LEN) -> list[Encoded]:
    items: list[Encoded] = []
    for doc in text_set.documents:
        items.extend(encode_document(tokenizer, doc, max_len))
    items.extend(encode_qa(tokenizer, qa, max_len) for qa in text_set.qa)
    return items


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for training."""
    import torch

    width = max(len(item.input_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(items: Sequence[Encoded], batch_size: int, seed: int) -> Iterator[list[Encoded]]:
    """Endless shuffled batches, length-sorted within a pool to keep padding small."""
    rng = random.Random(seed)
    while True:
        order = list(items)
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]


def labelled_logprobs(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Log-probabilities of the labelled next tokens, flat, and the row each belongs to.

    The vocabulary projection runs on labelled positions only: on a chat QA item the answer
    is a quarter of the tokens, and the 49k-word head is a fifth of the model's compute."""
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    rows = torch.nonzero(mask, as_tuple=True)[0]
    logits = causal.lm_head(hidden[:, :-1, :][mask]).float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels[mask].unsqueeze(-1)).squeeze(-1)
    return logp, rows


def sequence_logprob(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of token log-probabilities of the labelled positions, one value per row."""
    import torch

    logp, rows = labelled_logprobs(model, batch)
    totals = torch.zeros(batch["input_ids"].shape[0], dtype=logp.dtype)
    return totals.index_add(0, rows, logp)


def lm_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token NLL over the labelled positions (what `model(**batch).loss` gives)."""
    logp, _ = labelled_logprobs(model, batch)
    return -logp.mean()


def plus_retain(
    loss: Any,
    parts: dict[str, float],
    model: Any,
    retain: Sequence[Encoded] | None,
    pad_id: int,
    weight: float,
) -> Any:
    """`loss` plus `weight` times the language-model loss on the retain batch (what must stay
    known), recorded as `parts["retain_nll"]`; without a retain batch, `loss` as it is."""
    if not retain:
        return loss
    retain_nll = lm_loss(model, collate(retain, pad_id))
    parts["retain_nll"] = float(retain_nll.detach())
    return loss + weight * retain_nll


def weights_sha256(model_dir: Path) -> str:
    """sha256 of the model's safetensors (several shards hash in name order)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no .safetensors file")
    if len(files) == 1:
        return sha256_file(files[0])
    digest = hashlib.sha256()
    for path in files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def copy_serving_files(source: Path, dest: Path) -> None:
    """Tokenizer, chat template and generation config, so vLLM serves dest like source."""
    names = (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "generation_config.json",
        "vocab.json",
        "merges.txt",
    )
    for name in names:
        if (source / name).is_file() and not (dest / name).exists():
            shutil.copy2(source / name, dest / name)
