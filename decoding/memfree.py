"""MemFree decoding as a vLLM v1 logits processor, per request and per policy.

Started with `--logits-processors decoding.memfree:MemFreeProcessor` and the policy directory
in LETHE_DECODE_POLICIES, the engine indexes every policy in mode decode/both at start-up with
its own tokenizer. A request opts in through `vllm_xargs: {"lethe_policies": ["name@digest"]}`
(the gateway adds it; clients cannot); every other request costs one dict check per step.

The context of a request is its prompt's last tokens followed by its output so far: a
prefix-continuation attack puts the protected text's start in the prompt, and the first
output token must already be checked against it.

Fail closed inside the engine: a request naming a policy this engine has not indexed (or an
older version of it) gets every token but its stop tokens masked, so it ends at once, empty.
The API server refuses such requests before that (validate_params: HTTP 400), so this only
catches a policy directory that changed between the two processes' start-ups.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from decoding import POLICIES_ENV
from decoding.index import PolicyIndex, Vocabulary, build_index, index_bytes
from decoding.policies import DecodeSource, check_request, manifest, read_directory, requested

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

# Under "vllm" so that the engine's logging configuration shows these lines in its log.
log = logging.getLogger("vllm.lethe.decoding")


def _policy_dir() -> Path | None:
    value = os.environ.get(POLICIES_ENV)
    return Path(value) if value else None


_MANIFEST: dict[str, str] | None = None


def _frontend_manifest() -> dict[str, str]:
    """The index manifest as this process reads it (the API server validates against it)."""
    global _MANIFEST
    if _MANIFEST is None:
        directory = _policy_dir()
        _MANIFEST = manifest(read_directory(directory)) if directory else {}
    return _MANIFEST


@dataclass
class _Request:
    """One request's view: its policies, its prompt tail and its live output token list."""

    policies: tuple[PolicyIndex, ...]
    prompt_tail: list[int]
    output: list[int]
    context: int
    #: Stop tokens only, for a request naming a policy this engine does not hold.
    refuse: tuple[int, ...] | None = None

    def tail(self) -> list[int]:
        out = self.output
        k = self.context
        if len(out) >= k:
            return out[len(out) - k :]
        return (self.prompt_tail + out)[-k:]


class MemFreeProcessor(LogitsProcessor):
    """Masks, for opted-in requests, every token that completes a protected n-gram or spells
    a banned literal. Not argmax-invariant: it exists to change the greedy choice."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        # Also answers the gateway's probe: a refusal carrying what this engine enforces,
        # given before any generation (a 400 costs no forward pass).
        check_request(sampling_params.extra_args, _frontend_manifest())

    def __init__(
        self,
        vllm_config: VllmConfig | None,
        device: torch.device,
        is_pin_memory: bool,
        *,
        indexes: list[PolicyIndex] | None = None,
        vocab: Vocabulary | None = None,
        stop_tokens: tuple[int, ...] = (),
    ) -> None:
        self.device = device
        if indexes is None or vocab is None:
            indexes, vocab, stop_tokens = self._load(vllm_config)
        self.vocab = vocab
        self.by_name = {i.name: i for i in indexes}
        self.stop_tokens = stop_tokens
        self.requests: dict[int, _Request] = {}

    @staticmethod
    def _load(
        vllm_config: VllmConfig | None,
    ) -> tuple[list[PolicyIndex], Vocabulary, tuple[int, ...]]:
        from transformers import AutoTokenizer

        if vllm_config is None:
            raise ValueError("MemFreeProcessor needs a vLLM config or prebuilt indexes")
        model_config = vllm_config.model_config
        tokenizer = AutoTokenizer.from_pretrained(
            model_config.tokenizer, trust_remote_code=model_config.trust_remote_code
        )
        vocab = Vocabulary(tokenizer, limit=model_config.get_vocab_size())
        directory = _policy_dir()
        sources: list[DecodeSource] = read_directory(directory) if directory else []
        started = time.perf_counter()
        indexes = [build_index(s, tokenizer, vocab) for s in sources]
        for index in indexes:
            log.info(
                "lethe-decode: policy %s indexed: %d corpus tokens, %d contexts, n=%d, "
                "about %.1f MiB, %.2fs",
                index.tagged,
                index.corpus_tokens,
                len(index.follow),
                index.n,
                index_bytes(index) / 2**20,
                time.perf_counter() - started,
            )
        if not indexes:
            log.warning(
                "lethe-decode: no policy in mode decode/both (%s=%s)", POLICIES_ENV, directory
            )
        eos = tokenizer.eos_token_id
        return indexes, vocab, (eos,) if isinstance(eos, int) else ()

    def is_argmax_invariant(self) -> bool:
        return False

    def _new_state(
        self, params: SamplingParams, prompt_ids: list[int] | None, output_ids: list[int]
    ) -> _Request | None:
        try:
            names = requested(params.extra_args)
        except ValueError:
            names = ["(malformed)"]
        if not names:
            return None
        policies = []
        refuse = None
        for tagged in names:
            name, _, digest = tagged.partition("@")
            index = self.by_name.get(name)
            if index is None or (digest and index.digest != digest):
                stops = tuple(params.all_stop_token_ids or ()) or self.stop_tokens
                refuse = tuple(sorted(stops))
                log.error("lethe-decode: request names unindexed policy %s: ending it", tagged)
                break
            policies.append(index)
        context = max((p.context_tokens for p in policies), default=0)
        prompt_tail = list(prompt_ids[-context:]) if prompt_ids and context else []
        return _Request(tuple(policies), prompt_tail, output_ids, context, refuse)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, self._new_state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.requests:
            return logits
        rows: list[int] = []
        cols: list[int] = []
        vocab = self.vocab
        width = logits.shape[-1]
        for row, req in self.requests.items():
            if req.refuse is not None:
                keep = logits[row, list(req.refuse)].clone() if req.refuse else None
                logits[row] = float("-inf")
                if keep is not None:
                    logits[row, list(req.refuse)] = keep
                continue
            groups: list[tuple[int, ...]] = []
            tail = req.tail()
            for policy in req.policies:
                policy.banned(tail, vocab, groups)
            for group in groups:
                rows.extend([row] * len(group))
                cols.extend(group)
        if rows:
            r = torch.tensor(rows, dtype=torch.long)
            c = torch.tensor(cols, dtype=torch.long)
            if c.numel() and int(c.max()) >= width:
                keep = c < width
                r, c = r[keep], c[keep]
            logits[r.to(logits.device), c.to(logits.device)] = float("-inf")
        return logits


def describe(processor: MemFreeProcessor) -> dict[str, Any]:
    """Index sizes, for logs and the cost report."""
    return {
        name: {
            "digest": index.digest,
            "n": index.n,
            "corpus_tokens": index.corpus_tokens,
            "contexts": len(index.follow),
            "bytes": index_bytes(index),
        }
        for name, index in processor.by_name.items()
    }
