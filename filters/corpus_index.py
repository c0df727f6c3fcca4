"""An exact n-gram index for large protected corpora (thousands of books), built offline.

The verbatim filter's in-memory corpus (filters.verbatim) keeps Python structures per corpus
word: fine for one book, not for a catalogue. This index keeps, in files that are
memory-mapped read-only (one copy in the page cache for every gateway process on a host, or
every replica mounting the same volume):
- `ids.npy`: the corpus as word ids (uint32), words as `filters.normalize.words` folds them
  (leetspeak on, as the verbatim filter does);
- `bloom.npy`: a Bloom filter of the hashes of every `n`-word run (n = `min_words`), with
  `BLOOM_BITS_PER_KEY` bits per run and `BLOOM_HASHES` hash functions (false-positive rate
  about 0.8 % per lookup; stated, then confirmed away);
- `order.npy` / `starts.npy`: an inverted index (corpus positions sorted by word id), the
  confirmation step: a run that passes the Bloom filter is looked up at the positions of
  its rarest word and compared word for word with the stored corpus before anything is
  blocked, so a Bloom false positive never blocks;
- `vocab.json` and `manifest.json` (content hash of the corpus text, n, sizes).

Lookups are vectorised over the runs of a text (or of a streamed chunk's new words).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from filters.cache import staged_dir
from filters.normalize import LEET, words

FORMAT = 1
BLOOM_BITS_PER_KEY = 10
BLOOM_HASHES = 7
#: Words per piece when building (bounds the build's memory).
PIECE_WORDS = 2_000_000
_ASCII_WORD = re.compile(r"[a-z0-9]+")
_DIGIT = re.compile(r"[0-9]")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_BASE = np.uint64(0x9E3779B97F4A7C15)


def fast_words(text: str) -> list[str]:
    """`[w.text for w in words(text, leet=True)]`, fast for ASCII text (the bulk of a
    publisher's catalogue); other text takes the general path."""
    if not text.isascii():
        return [w.text for w in words(text, leet=True)]
    # "@" and "$" read as letters wherever they are (as `words(leet=True)` reads them).
    toks: list[str] = _ASCII_WORD.findall(text.lower().replace("@", "a").replace("$", "s"))
    if _DIGIT.search(text) is None:
        return toks
    return [t.translate(LEET) if not t.isdigit() and not t.isalpha() else t for t in toks]


def run_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of every run of `n` consecutive ids (len(ids) - n + 1 of them)."""
    if len(ids) < n:
        return np.zeros(0, dtype=np.uint64)
    x = ids.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9) + np.uint64(1)
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _BASE + x[k : k + len(h)]
            h ^= h >> np.uint64(29)
    return h


def _bit_positions(h: np.ndarray, m: int) -> np.ndarray:
    """(len(h), BLOOM_HASHES) bit indexes by double hashing."""
    with np.errstate(over="ignore"):
        h1 = h
        h2 = (h * np.uint64(0x94D049BB133111EB)) ^ (h >> np.uint64(31)) | np.uint64(1)
        k = np.arange(BLOOM_HASHES, dtype=np.uint64)
        return ((h1[:, None] + k[None, :] * h2[:, None]) % np.uint64(m)).astype(np.int64)


@dataclass(frozen=True)
class BuildStats:
    words: int
    vocabulary: int
    seconds: float
    bytes_on_disk: int


def build(texts: Iterable[str], out: Path, n: int = 12) -> BuildStats:
    """Build the index of the concatenated `texts` into directory `out` (replaced
    atomically). The content hash covers the texts and `n`."""
    started = time.perf_counter()
    out = Path(out)
    with staged_dir(out) as staging:
        vocab: dict[str, int] = {}
        digest = hashlib.sha256(f"lethe-corpus-index:{FORMAT}:{n}".encode())
        pieces: list[np.ndarray] = []
        for text in texts:
            digest.update(text.encode("utf-8", "surrogatepass"))
            toks = fast_words(text)
            pieces.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks),
                                      dtype=np.uint32, count=len(toks)))
        ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint32)
        del pieces
        np.save(staging / "ids.npy", ids)
        runs = max(len(ids) - n + 1, 0)
        m = max(64, BLOOM_BITS_PER_KEY * runs)
        bloom = np.zeros((m + 63) // 64, dtype=np.uint64)
        for a in range(0, runs, PIECE_WORDS):
            h = run_hashes(ids[a : min(a + PIECE_WORDS, runs) + n - 1], n)
            # Sorted bit positions, OR-ed per 64-bit word with reduceat (ufunc.at and
            # np.unique are orders of magnitude slower here).
            bits = np.sort(_bit_positions(h, m).ravel())
            slots = bits >> 6
            first = np.flatnonzero(np.diff(slots, prepend=-1))
            masks = np.left_shift(np.uint64(1), (bits & 63).astype(np.uint64))
            bloom[slots[first]] |= np.bitwise_or.reduceat(masks, first)
        np.save(staging / "bloom.npy", bloom)
        order = np.argsort(ids).astype(np.uint32)  # positions of each word, in any order
        starts = np.zeros(len(vocab) + 1, dtype=np.uint64)
        np.cumsum(np.bincount(ids, minlength=len(vocab)), out=starts[1:])
        np.save(staging / "order.npy", order)
        np.save(staging / "starts.npy", starts)
        words_list = [""] * len(vocab)
        for w, i in vocab.items():
            words_list[i] = w
        (staging / "vocab.json").write_text(json.dumps(words_list), encoding="utf-8")
        manifest = {"format": FORMAT, "n": n, "words": len(ids), "vocabulary": len(vocab),
                    "bloom_bits": m, "bloom_hashes": BLOOM_HASHES,
                    "content_sha256": digest.hexdigest()}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.iterdir())
    return BuildStats(len(ids), len(vocab), time.perf_counter() - started, size)


def content_hash(texts: Iterable[str], n: int = 12) -> str:
    digest = hashlib.sha256(f"lethe-corpus-index:{FORMAT}:{n}".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@dataclass(frozen=True)
class Hit:
    """A confirmed run: its first word's index in the looked-up words, and a corpus position."""

    word: int
    corpus_position: int


class CorpusIndex:
    """A built index, memory-mapped; thread-safe (read-only)."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{self.dir}: index format {self.manifest.get('format')}, "
                             f"expected {FORMAT}: rebuild it")
        self.n = int(self.manifest["n"])
        self.m = int(self.manifest["bloom_bits"])
        self.ids = np.load(self.dir / "ids.npy", mmap_mode="r")
        self.order = np.load(self.dir / "order.npy", mmap_mode="r")
        self.starts = np.load(self.dir / "starts.npy", mmap_mode="r")
        # The Bloom filter is read on every lookup: loaded, not mapped.
        self.bloom = np.load(self.dir / "bloom.npy")
        vocab = json.loads((self.dir / "vocab.json").read_text(encoding="utf-8"))
        self.vocab = {w: i for i, w in enumerate(vocab)}
        self.bloom_passes = 0  # runs that passed the Bloom filter (for the stated FP rate)
        self.confirmed = 0

    def to_ids(self, toks: list[str]) -> np.ndarray:
        """Word ids; a word the corpus lacks gets -1 (no run through it can match)."""
        get = self.vocab.get
        return np.fromiter((get(t, -1) for t in toks), dtype=np.int64, count=len(toks))

    def maybe(self, ids: np.ndarray) -> np.ndarray:
        """Bloom test of every run of `ids` (True: maybe in the corpus)."""
        runs = len(ids) - self.n + 1
        if runs <= 0:
            return np.zeros(0, dtype=bool)
        known = np.convolve((ids >= 0).astype(np.int64), np.ones(self.n, dtype=np.int64),
                            mode="valid") == self.n
        out = np.zeros(runs, dtype=bool)
        if not known.any():
            return out
        where = np.flatnonzero(known)
        h = run_hashes(ids.astype(np.uint32, copy=False) if (ids >= 0).all()
                       else np.where(ids >= 0, ids, 0).astype(np.uint32), self.n)[where]
        bits = _bit_positions(h, self.m)
        words64 = self.bloom[bits >> 6]
        hit = ((words64 >> (bits & 63).astype(np.uint64)) & np.uint64(1)).all(axis=1)
        out[where] = hit
        return out

    def confirm(self, run: np.ndarray) -> int:
        """A corpus position where `run` (n ids) occurs, or -1: the exact check."""
        counts = [int(self.starts[w + 1]) - int(self.starts[w]) for w in run.tolist()]
        k = int(np.argmin(counts))
        w = int(run[k])
        positions = np.asarray(self.order[int(self.starts[w]) : int(self.starts[w + 1])],
                               dtype=np.int64) - k
        positions = positions[(positions >= 0) & (positions + self.n <= len(self.ids))]
        for j in range(self.n):
            if not len(positions):
                return -1
            if j != k:
                positions = positions[np.asarray(self.ids[positions + j]) == run[j]]
        return int(positions[0]) if len(positions) else -1

    def find(self, toks: list[str]) -> list[Hit]:
        """Confirmed runs of `n` corpus words in `toks` (the folded words of a text)."""
        ids = self.to_ids(toks)
        hits = []
        for i in np.flatnonzero(self.maybe(ids)).tolist():
            self.bloom_passes += 1
            pos = self.confirm(ids[i : i + self.n])
            if pos >= 0:
                self.confirmed += 1
                hits.append(Hit(i, pos))
        return hits

    def resident_bytes(self) -> int:
        """What the index keeps in RAM besides mapped pages: the Bloom filter and the
        vocabulary dictionary (approximate)."""
        return int(self.bloom.nbytes) + 100 * len(self.vocab)


def iter_texts(paths: Iterable[Path]) -> Iterator[str]:
    for p in paths:
        yield Path(p).read_text(encoding="utf-8")
