"""What the engine indexes: the policies in mode `decode` or `both` of a policy directory.

The gateway validates policy files in full (gateway.policy); this reader takes only the fields
decoding needs, so that the engine's image needs PyYAML and nothing of the gateway. The
gateway calls the same `read_policy` to learn the digest it expects the engine to hold, so
that both sides agree on what "the same policy" means: same corpus, literals and n.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DECODE_MODES = frozenset({"decode", "both"})
#: Default n of the protected token n-grams (see docs/decoding.md for the choice).
DEFAULT_NGRAM_TOKENS = 10
#: Default n of the protected normalised word n-grams: at most 9 words of the corpus in a row,
#: whatever their case, spacing, punctuation or tokenisation (the verbatim filter's bar is 12).
DEFAULT_NGRAM_WORDS = 10
#: Version of the index format: a change invalidates every digest.
INDEX_VERSION = 2


class DecodePolicyError(ValueError):
    """A policy file the engine cannot index; the message names the file and field."""


@dataclass(frozen=True)
class DecodeSource:
    """The text a decode policy protects, read from its file and data files."""

    name: str
    corpus: str
    literals: tuple[str, ...]
    ngram_tokens: int
    digest: str
    ngram_words: int = DEFAULT_NGRAM_WORDS

    @property
    def tagged(self) -> str:
        """How requests name this policy in `vllm_xargs`: name@digest."""
        return f"{self.name}@{self.digest}"


def source_digest(
    corpus: str,
    literals: tuple[str, ...],
    ngram_tokens: int,
    ngram_words: int = DEFAULT_NGRAM_WORDS,
) -> str:
    payload = json.dumps(
        {
            "v": INDEX_VERSION,
            "n": ngram_tokens,
            "words": ngram_words,
            "corpus": corpus,
            "literals": list(literals),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _mode(raw: dict[str, Any]) -> str:
    mode = raw.get("mode", "suppress")
    # YAML 1.1 reads an unquoted `off` as false.
    return "off" if mode is False else str(mode)


def read_policy(path: Path) -> DecodeSource | None:
    """The decode source of one policy file, or None when its mode is not decode/both."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DecodePolicyError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise DecodePolicyError(f"{path}: not a policy (a mapping with a name)")
    if _mode(raw) not in DECODE_MODES:
        return None
    data = raw.get("data") or {}
    corpus = ""
    corpus_file = data.get("corpus_file")
    if corpus_file:
        try:
            corpus = (path.parent / str(corpus_file)).read_text(encoding="utf-8")
        except OSError as exc:
            raise DecodePolicyError(
                f"{path}: field data.corpus_file: {corpus_file}: {exc.strerror}"
            ) from exc
    literals = tuple(str(s).strip() for s in data.get("literals") or () if str(s).strip())
    if not corpus.strip() and not literals:
        if _mode(raw) == "both":
            return None  # unlearning and filters only: nothing to index
        raise DecodePolicyError(
            f"{path}: field mode: decode needs data.corpus_file or data.literals"
        )
    decode = raw.get("decode") or {}
    n = int(decode.get("ngram_tokens", DEFAULT_NGRAM_TOKENS))
    w = int(decode.get("ngram_words", DEFAULT_NGRAM_WORDS))
    digest = source_digest(corpus, literals, n, w)
    return DecodeSource(raw["name"], corpus, literals, n, digest, w)


def read_directory(directory: Path) -> list[DecodeSource]:
    """Decode sources of the top-level policy files (tenant directories are not indexed:
    their decode policies fall back to their filters at the gateway)."""
    if not directory.is_dir():
        raise DecodePolicyError(f"{directory}: policy directory does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    sources = [s for s in (read_policy(p) for p in files) if s is not None]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise DecodePolicyError(f"{directory}: two decode policies share a name")
    return sources


def manifest(sources: list[DecodeSource]) -> dict[str, str]:
    return {s.name: s.digest for s in sources}


def check_request(extra_args: dict[str, Any] | None, held: dict[str, str]) -> None:
    """Validate one request's decoding arguments against the index manifest `held`.

    Raises ValueError (vLLM answers HTTP 400): for the gateway's probe, with the manifest in
    the message; for a request naming a policy (name@digest) that is not held.
    """
    from decoding import PROBE_ARG, PROBE_REPLY

    extra = extra_args or {}
    if PROBE_ARG in extra:
        raise ValueError(PROBE_REPLY + json.dumps(held, sort_keys=True))
    for tagged in requested(extra):
        name, _, digest = tagged.partition("@")
        if name not in held or (digest and held[name] != digest):
            raise ValueError(
                f"lethe-decode: policy {name!r} is not indexed by this engine "
                f"(version {digest or 'any'})"
            )


def requested(extra_args: dict[str, Any] | None) -> list[str]:
    """The `name@digest` entries a request names in `lethe_policies` (empty: none)."""
    from decoding import POLICIES_ARG

    value = (extra_args or {}).get(POLICIES_ARG)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{POLICIES_ARG} must be a list of policy names")
    return list(dict.fromkeys(value))
