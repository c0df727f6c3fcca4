"""The per-policy ban index: protected token n-grams and banned literals, in the served
model's own tokens.

Three parts, all answering "which next tokens must not be sampled after this context?":

- **Protected n-grams** (MemFree). Every n-token window of the corpus, tokenised as written
  and with its whitespace collapsed (a line start then reads like mid-text), is stored as
  hash(first n-1 tokens) -> the tokens that complete it. A lookup gives *every* completing
  token at once, so the processor masks them all, whatever the sampling parameters: no top-k
  approximation and no iterative argmax. Each completing token also bans the tokens that
  spell a proper prefix of it (" t", " ti" for " tide"), the cheapest way for a model to
  route around a masked word by spelling it in pieces.
- **Protected word n-grams** on normalised text (lower case, words = runs of letters and
  digits): after n-1 corpus words, however they were written, no token may start spelling a
  word that follows them in the corpus. This closes what the token index cannot see: a
  capital, a newline for a space, changed punctuation, a word spelled in other tokens.
- **Literals.** Matched on bytes, case-insensitively (ASCII), at a word start: for a context
  whose bytes end with the first j bytes of a literal, every token whose bytes start with the
  rest is banned; tokens that contain the whole literal after a word boundary are banned
  outright. That covers every tokenisation of every case form, with or without a leading
  space, for literals of any length, without enumerating spellings.

Memory is a Python dict: about 200 bytes per corpus token and variant (bench/decode_bench.py
measures it). That is fine for books, not for web-scale corpora, where a Bloom filter over
n-gram hashes plus a candidate check (CoTaEval's design) would replace `follow`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from decoding.policies import DecodeSource

_WHITESPACE = re.compile(r"\s+")


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for raw bytes (byte-level BPE vocabularies), inverted."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_SPM_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
#: A normalised word: lower-case ASCII letters and digits, and any non-ASCII byte (UTF-8).
_WORD_RUN = re.compile(rb"[a-z0-9\x80-\xff]+")


def norm_words(text: bytes) -> list[bytes]:
    """Words as the word index sees them: case, spacing and punctuation dropped."""
    return _WORD_RUN.findall(text.lower())


class Vocabulary:
    """The bytes each token id spells (special tokens spell nothing)."""

    def __init__(self, tokenizer: Any, limit: int | None = None) -> None:
        size = len(tokenizer) if limit is None else min(len(tokenizer), limit)
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        decoder = _gpt2_byte_decoder()
        normal = [p for i, p in enumerate(pieces) if i not in special and p]
        byte_level = all(ch in decoder for p in normal for ch in p)
        self.bytes: list[bytes] = []
        for i, piece in enumerate(pieces):
            if i in special or not piece:
                self.bytes.append(b"")
            elif byte_level:
                self.bytes.append(bytes(decoder[ch] for ch in piece))
            elif m := _SPM_BYTE.match(piece):
                self.bytes.append(bytes([int(m.group(1), 16)]))
            else:
                self.bytes.append(piece.replace("\u2581", " ").encode("utf-8"))
        self.by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(self.bytes):
            if b:
                self.by_bytes.setdefault(b, []).append(i)
        self.max_len = max((len(b) for b in self.bytes), default=1)
        # Lower-cased bytes, sorted, for "which tokens start with S" by bisection.
        self._sorted = sorted((b.lower(), i) for i, b in enumerate(self.bytes) if b)
        self._keys = [b for b, _ in self._sorted]
        # Each token's first word run (lower-cased), for spelling words in any case:
        # run -> [(token, starts with a separator, has bytes after the run)].
        self.by_run: dict[bytes, list[tuple[int, bool, bool]]] = {}
        for i, b in enumerate(self.bytes):
            run = _WORD_RUN.search(b.lower())
            if run:
                entry = (i, run.start() > 0, run.end() < len(b))
                self.by_run.setdefault(run.group(), []).append(entry)

    def __len__(self) -> int:
        return len(self.bytes)

    def spell(self, ids: Sequence[int]) -> bytes:
        n = len(self.bytes)
        return b"".join(self.bytes[t] if 0 <= t < n else b"" for t in ids)

    def starting_with(self, prefix: bytes) -> list[int]:
        """Tokens whose lower-cased bytes start with `prefix` (itself lower-cased)."""
        lo = bisect.bisect_left(self._keys, prefix)
        out = []
        for k in range(lo, len(self._keys)):
            if not self._keys[k].startswith(prefix):
                break
            out.append(self._sorted[k][1])
        return out

    def prefix_tokens(self, token: int) -> list[int]:
        """Tokens spelling a proper, non-empty prefix of `token`'s bytes (exact case)."""
        b = self.bytes[token] if 0 <= token < len(self.bytes) else b""
        return [t for k in range(1, len(b)) for t in self.by_bytes.get(b[:k], ())]

    def containing(self, needle: bytes) -> list[int]:
        """Tokens whose lower-cased bytes hold `needle` after a word boundary inside them."""
        out = []
        for b, i in self._sorted:
            pos = b.find(needle, 1)
            while pos > 0:
                if not _word_byte(b[pos - 1]):
                    out.append(i)
                    break
                pos = b.find(needle, pos + 1)
        return out


def _camel(text: bytes, at: int) -> bool:
    """A small letter at `at` followed by a capital: a word starts after `at`."""
    return text[at : at + 1].islower() and text[at + 1 : at + 2].isupper()


def _word_byte(b: int) -> bool:
    """Letters, digits and UTF-8 continuation/lead bytes: a literal must not start after one."""
    return b >= 0x80 or chr(b).isalnum()


@dataclass
class LiteralBans:
    """Banned literals of one policy, matched on lower-cased bytes at a word start."""

    forms: tuple[bytes, ...]
    #: Tokens containing a whole literal after an in-token word boundary: always banned.
    inner: tuple[int, ...]
    #: Tokens starting with a whole literal: banned when the context ends at a word boundary.
    at_start: tuple[int, ...]
    #: Those of them that start with a capital: also banned right after a lower-case letter
    #: ("aboutHogwarts" starts a word too).
    at_start_capital: tuple[int, ...]
    #: Last byte of a literal's first j bytes -> [(those j bytes, tokens completing the rest)].
    partial: dict[int, list[tuple[bytes, tuple[int, ...]]]]
    #: Context tokens needed to see the longest partial literal and the byte before it.
    tail_tokens: int

    @classmethod
    def build(cls, literals: Sequence[str], vocab: Vocabulary) -> LiteralBans:
        forms = tuple(
            dict.fromkeys(s.strip().lower().encode("utf-8") for s in literals if s.strip())
        )
        inner: set[int] = set()
        at_start: set[int] = set()
        partial: dict[int, list[tuple[bytes, tuple[int, ...]]]] = {}
        for form in forms:
            inner.update(vocab.containing(form))
            at_start.update(vocab.starting_with(form))
            for j in range(1, len(form)):
                rest = tuple(vocab.starting_with(form[j:]))
                if rest:
                    partial.setdefault(form[j - 1], []).append((form[:j], rest))
        longest = max((len(f) for f in forms), default=0)
        capital = tuple(t for t in sorted(at_start) if vocab.bytes[t][:1].isupper())
        return cls(
            forms, tuple(sorted(inner)), tuple(sorted(at_start)), capital, partial, longest + 1
        )

    def banned(self, tail: bytes, out: list[tuple[int, ...]]) -> None:
        """Append to `out` the token groups banned after context bytes `tail`."""
        if self.inner:
            out.append(self.inner)
        if not tail or not _word_byte(tail[-1]):
            out.append(self.at_start)
        elif tail[-1:].islower():
            out.append(self.at_start_capital)
        if not tail:
            return
        low = tail.lower()
        for head, rest in self.partial.get(low[-1], ()):
            if low.endswith(head):
                before = len(low) - len(head) - 1
                # A literal starting with a letter must start a word; short tails (the start
                # of the text) count as a word start, and so does a capital after a small letter.
                if (
                    before < 0
                    or not _word_byte(head[0])
                    or not _word_byte(low[before])
                    or _camel(tail, before)
                ):
                    out.append(rest)


@dataclass
class WordBans:
    """Protected word n-grams on normalised text (MemFree over words): after n-1 corpus words,
    in any case, spacing, punctuation or tokenisation, no token may start spelling a word
    that follows them in the corpus. Catches the copies the token index misses (a capital, a
    newline for a space, a word split into other tokens)."""

    n: int
    #: hash(tuple of n-1 normalised words) -> the words that follow them in the corpus.
    follow: dict[int, tuple[bytes, ...]]
    vocab: Vocabulary
    tail_tokens: int
    _at_start: dict[bytes, tuple[int, ...]] = field(default_factory=dict)
    _after_word: dict[bytes, tuple[int, ...]] = field(default_factory=dict)
    _inside: dict[tuple[bytes, int], tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, corpus: str, n: int, vocab: Vocabulary) -> WordBans:
        ws = norm_words(corpus.encode("utf-8"))
        follow: dict[int, set[bytes]] = {}
        for i in range(len(ws) - n + 1):
            follow.setdefault(hash(tuple(ws[i : i + n - 1])), set()).add(ws[i + n - 1])
        frozen = {k: tuple(sorted(v)) for k, v in follow.items()}
        # Words run to several tokens each (" Br"+"in"+"m"+"arch"): room for n of the longest.
        return cls(n, frozen, vocab, tail_tokens=4 * n + 4)

    def starting(self, word: bytes) -> tuple[int, ...]:
        """Tokens that begin spelling `word` at a word start (its prefixes, or all of it)."""
        hit = self._at_start.get(word)
        if hit is None:
            out = []
            for k in range(1, len(word) + 1):
                for token, _lead, after in self.vocab.by_run.get(word[:k], ()):
                    # " ed." ends the word short of "edge": allowed; " edge." completes it.
                    if k == len(word) or not after:
                        out.append(token)
            hit = self._at_start[word] = tuple(out)
        return hit

    def after_word(self, word: bytes) -> tuple[int, ...]:
        """Tokens that end the word before them with a separator and begin spelling `word`."""
        hit = self._after_word.get(word)
        if hit is None:
            leading = {t for t, lead, _ in self._entries(word) if lead}
            hit = self._after_word[word] = tuple(t for t in self.starting(word) if t in leading)
        return hit

    def _entries(self, word: bytes) -> list[tuple[int, bool, bool]]:
        return [e for k in range(1, len(word) + 1) for e in self.vocab.by_run.get(word[:k], ())]

    def continuing(self, word: bytes, done: int) -> tuple[int, ...]:
        """Tokens that go on spelling `word` after its first `done` bytes."""
        key = (word, done)
        hit = self._inside.get(key)
        if hit is None:
            rest = word[done:]
            out = []
            for k in range(1, len(rest) + 1):
                for token, lead, after in self.vocab.by_run.get(rest[:k], ()):
                    if not lead and (k == len(rest) or not after):
                        out.append(token)
            hit = self._inside[key] = tuple(out)
        return hit

    def banned(self, tail: bytes, out: list[tuple[int, ...]]) -> None:
        low = tail.lower()
        words = _WORD_RUN.findall(low)
        partial = b""
        if low and _word_byte(low[-1]) and words:
            partial, words = words[-1], words[:-1]
        k = self.n - 1
        if not partial:
            for word in self._next(words, k):
                out.append(self.starting(word))
            return
        # The last word may go on (" Quill" + "haven")...
        for word in self._next(words, k):
            if len(word) > len(partial) and word.startswith(partial):
                out.append(self.continuing(word, len(partial)))
        # ...or be complete, the next token opening the next word after a separator.
        for word in self._next([*words, partial], k):
            out.append(self.after_word(word))

    def _next(self, words: list[bytes], k: int) -> tuple[bytes, ...]:
        if len(words) < k:
            return ()
        return self.follow.get(hash(tuple(words[len(words) - k :])), ())


@dataclass
class PolicyIndex:
    """Everything the processor needs for one policy."""

    name: str
    digest: str
    n: int
    #: hash(tuple of n-1 context tokens) -> tokens that would complete a protected n-gram.
    follow: dict[int, tuple[int, ...]] = field(default_factory=dict)
    literals: LiteralBans | None = None
    corpus_tokens: int = 0
    words: WordBans | None = None

    @property
    def tagged(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def context_tokens(self) -> int:
        lit = self.literals.tail_tokens if self.literals else 0
        words = self.words.tail_tokens if self.words else 0
        return max(self.n - 1 if self.follow else 0, lit, words)

    def banned(self, context: Sequence[int], vocab: Vocabulary, out: list[tuple[int, ...]]) -> None:
        """Append to `out` the token groups that must not follow `context` (a short tail)."""
        k = self.n - 1
        if self.follow and len(context) >= k:
            hit = self.follow.get(hash(tuple(context[len(context) - k :])))
            if hit:
                out.append(hit)
        if self.words is not None and self.words.follow:
            self.words.banned(vocab.spell(context[-self.words.tail_tokens :]), out)
        if self.literals is not None:
            t = self.literals.tail_tokens
            self.literals.banned(vocab.spell(context[-t:]), out)


def corpus_variants(corpus: str) -> list[str]:
    """The corpus as written and with whitespace runs collapsed to one space."""
    collapsed = _WHITESPACE.sub(" ", corpus).strip()
    return list(dict.fromkeys(v for v in (corpus, collapsed) if v.strip()))


def build_index(source: DecodeSource, tokenizer: Any, vocab: Vocabulary) -> PolicyIndex:
    n = source.ngram_tokens
    if n < 2:
        raise ValueError(f"policy {source.name!r}: decode.ngram_tokens must be at least 2")
    follow_sets: dict[int, set[int]] = {}
    total = 0
    for text in corpus_variants(source.corpus):
        ids = tokenizer.encode(text, add_special_tokens=False)
        total += len(ids)
        for i in range(len(ids) - n + 1):
            follow_sets.setdefault(hash(tuple(ids[i : i + n - 1])), set()).add(ids[i + n - 1])
    follow: dict[int, tuple[int, ...]] = {}
    for key, tokens in follow_sets.items():
        closed = set(tokens)
        for t in tokens:
            closed.update(vocab.prefix_tokens(t))
        follow[key] = tuple(sorted(closed))
    literals = LiteralBans.build(source.literals, vocab) if source.literals else None
    words = None
    if source.corpus.strip():
        words = WordBans.build(source.corpus, source.ngram_words, vocab)
        for word in {w for ws in words.follow.values() for w in ws}:
            words.starting(word)  # built now, not on the first request's step
    return PolicyIndex(source.name, source.digest, n, follow, literals, total, words)


def index_bytes(index: PolicyIndex) -> int:
    """Approximate heap size of an index (dicts, keys, tuples), for the cost report."""
    import sys

    size = sys.getsizeof(index.follow)
    for key, value in index.follow.items():
        size += sys.getsizeof(key) + sys.getsizeof(value)
    if index.words is not None:
        size += sys.getsizeof(index.words.follow)
        for key, nexts in index.words.follow.items():
            size += sys.getsizeof(key) + sys.getsizeof(nexts) + sum(map(sys.getsizeof, nexts))
        size += sum(sys.getsizeof(v) for v in index.words._at_start.values())
    lit = index.literals
    if lit is not None:
        size += sys.getsizeof(lit.inner) + sys.getsizeof(lit.at_start)
        size += sum(
            sys.getsizeof(head) + sys.getsizeof(rest)
            for entries in lit.partial.values()
            for head, rest in entries
        )
    return size
