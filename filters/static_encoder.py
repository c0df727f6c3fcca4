"""A static embedding model distilled from MiniLM: the cascade's cheap first stage.

Distillation (`distill`, run by `lethe models prepare`, offline) follows model2vec
(Tulkens & van Dongen, MinishLab): every WordPiece token of MiniLM's vocabulary goes through
MiniLM alone (`[CLS] token [SEP]`, mean-pooled), the table is reduced by PCA to 256 dimensions
and each row weighted by SIF on a Zipf estimate of its frequency (`w = a / (a + p(rank))`,
a = 1e-4). The files are model2vec's layout (`model.safetensors` with an `embeddings` tensor,
`tokenizer.json`, `config.json`), so `model2vec.StaticModel.from_pretrained` reads them too.
model2vec itself is not a dependency: its `distill` extra pins transformers < 5.4, older than
the one vLLM and the bundle use, and inference is a table lookup.

A text's vector is the mean of its tokens' rows (unknown tokens dropped), L2-normalised.

`span_vectors(text, spans)` tokenises the covering stretch of text once and takes each span's
sum from prefix sums at the spans' token boundaries. A span's vector depends on the span's
text alone: WordPiece tokenises each pre-token (split at whitespace and punctuation) on its
own, so when a span starts and ends on pre-token boundaries of the stretch its tokens are
exactly those of the span encoded alone; a span that cuts a pre-token (rare:
`filters.normalize.words` and BERT disagree on a boundary) is encoded alone. Rows are float16
values summed in float64, and those sums are exact (every float16 is a multiple of 2^-24 and
the sums stay far below 2^29), so a sum taken from prefixes equals the sum taken alone to the
last bit: a stream, which tokenises other stretches than the whole-text check, gets the same
scores.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filters.cache import cache_dir

DIRNAME = "all-minilm-l6-v2-static"
#: The common direction (see `StaticEncoder.common_direction`), stored beside the weights.
COMMON_FILE = "common_direction.npy"
WEIGHTS = "model.safetensors"
TENSOR = "embeddings"
PCA_DIMS = 256
SIF_COEFFICIENT = 1e-4
#: Stretches kept tokenised (LRU), so every filter of every policy judging one request's text
#: tokenises it once.
STRETCH_CACHE = 8
#: Standard-library modules whose docstrings are the background text the common direction is
#: estimated on (generic technical English that ships with the interpreter; offline).
BACKGROUND_MODULES = (
    "argparse", "asyncio", "collections", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "email", "enum", "functools", "heapq", "http.client", "inspect", "io", "itertools",
    "json", "logging", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
    "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time",
    "typing", "unittest", "urllib.request", "xml.etree.ElementTree", "zipfile",
)


def default_dir() -> Path:
    return cache_dir() / "models" / DIRNAME


@dataclass(frozen=True)
class _Stretch:
    """One tokenised stretch of text: token char offsets, its tokens' rows and counts."""

    starts: np.ndarray  # token start offsets (absolute), int64
    ends: np.ndarray  # token end offsets (absolute), int64
    cont: np.ndarray  # bool: token continues the pre-token before it ("##...")
    ids: np.ndarray  # token ids (the rows are gathered per call: 12 MiB for 4,000 words)
    known: np.ndarray  # bool: not the unknown token
    counts: np.ndarray  # (n + 1,) int64 prefix counts of kept (known) tokens


class StaticEncoder:
    """Thread-safe; loads in milliseconds; needs numpy, safetensors and tokenizers only."""

    def __init__(self, model_dir: Path | None = None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir else default_dir()
        weights = self.model_dir / WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} missing: run `lethe models prepare`")
        table = load_file(str(weights))[TENSOR]
        # float16 on disk; kept float16 in memory (15 MiB) and widened per lookup.
        self.table = np.ascontiguousarray(table.astype(np.float16))
        self.dim = int(self.table.shape[1])
        #: What calibrations made with this model are keyed by.
        digest = hashlib.sha256(self.table.tobytes())
        if (self.model_dir / COMMON_FILE).is_file():
            digest.update((self.model_dir / COMMON_FILE).read_bytes())
        self.identity = digest.hexdigest()[:16]
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        vocab = self.tokenizer.get_vocab()
        self.unk_id = vocab.get("[UNK]", -1)
        self._continuation = np.zeros(len(self.table), dtype=bool)
        for token, idx in vocab.items():
            if token.startswith("##") and idx < len(self.table):
                self._continuation[idx] = True
        self._lock = threading.Lock()
        self._common: np.ndarray | None = None
        self._stretches: OrderedDict[tuple[str, int, int], _Stretch] = OrderedDict()

    # -- the common direction ----------------------------------------------------------------
    @property
    def common_direction(self) -> np.ndarray:
        """The first principal direction of windows of ordinary text (unit, float64).

        Mean-of-token vectors share a large common component (any two 32-word windows of
        English have a cosine around 0.4 here), which drowns the topic signal; scores are taken
        with it projected out, as SIF embeddings remove their first principal component
        (Arora et al. 2017). Estimated once per process from standard-library docstrings.
        """
        with self._lock:
            if self._common is None:
                path = self.model_dir / COMMON_FILE
                if path.is_file():
                    self._common = np.load(path).astype(np.float64)
                else:  # a model built before the direction was stored: seconds, once
                    self._common = _principal_direction(self, background_text())
            return self._common

    # -- whole texts -------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 mean vectors, one row per text (zeros for a text with no
        known token)."""
        return self.encode_counted(texts)[0]

    def encode_counted(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode`, and each text's number of known tokens."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        counts = np.zeros(len(texts), dtype=np.int64)
        for i, enc in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            ids = ids[ids != self.unk_id]
            counts[i] = len(ids)
            if len(ids):
                out[i] = _unit(self.table[ids].astype(np.float64).sum(axis=0))
        return out, counts

    # -- spans of one text -------------------------------------------------------------------
    def span_vectors(self, text: str, spans: list[tuple[int, int]]) -> np.ndarray:
        """Unit float32 vectors of `text[a:b]` for each span, equal to `encode([text[a:b]])`."""
        return self.span_vectors_counted(text, spans)[0]

    def span_vectors_counted(
        self, text: str, spans: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`span_vectors`, and each span's number of known tokens (`encode_counted`)."""
        out = np.zeros((len(spans), self.dim), dtype=np.float32)
        tally = np.zeros(len(spans), dtype=np.int64)
        if not spans:
            return out, tally
        lo = min(a for a, _ in spans)
        hi = max(b for _, b in spans)
        st = self._stretch(text, lo, hi)
        firsts = np.searchsorted(st.starts, [a for a, _ in spans], side="left")
        lasts = np.searchsorted(st.starts, [b for _, b in spans], side="left")  # exclusive
        n = len(st.starts)
        alone: list[int] = []
        good: list[int] = []
        for k, (a, b) in enumerate(spans):
            if _aligned(st, n, int(firsts[k]), int(lasts[k]), a, b):
                good.append(k)
            else:
                alone.append(k)
        if good:
            # Prefix sums at the spans' token boundaries only: sums of the pieces between
            # consecutive boundaries (reduceat), then a running sum over those few pieces.
            bounds = np.unique(np.concatenate([firsts[good], lasts[good], [0]]))
            bounds = bounds[bounds < n] if n else bounds[:0]
            prefix = np.zeros((len(bounds) + 1, self.dim), dtype=np.float64)
            if len(bounds):
                rows = self.table[st.ids].astype(np.float64)
                rows[~st.known] = 0.0
                np.cumsum(np.add.reduceat(rows, bounds, axis=0), axis=0, out=prefix[1:])
            at = {int(b): i for i, b in enumerate(bounds)}
            at[n] = len(bounds)
            for k in good:
                i, j = int(firsts[k]), int(lasts[k])
                count = st.counts[j] - st.counts[i]
                tally[k] = count
                if count:
                    out[k] = _unit((prefix[at[j]] - prefix[at[i]]) / count)
        if alone:
            vecs, counts = self.encode_counted([text[spans[k][0] : spans[k][1]] for k in alone])
            out[alone], tally[alone] = vecs, counts
        return out, tally

    def _stretch(self, text: str, lo: int, hi: int) -> _Stretch:
        key = (text, lo, hi)
        with self._lock:
            hit = self._stretches.get(key)
            if hit is not None:
                self._stretches.move_to_end(key)
                return hit
        enc = self.tokenizer.encode(text[lo:hi], add_special_tokens=False)
        ids = np.asarray(enc.ids, dtype=np.int64)
        offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2) + lo
        known = ids != self.unk_id
        counts = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(known, out=counts[1:])
        st = _Stretch(offsets[:, 0], offsets[:, 1], self._continuation[ids], ids, known, counts)
        with self._lock:
            self._stretches[key] = st
            while len(self._stretches) > STRETCH_CACHE:
                self._stretches.popitem(last=False)
        return st


def write_common_direction(model_dir: Path) -> Path:
    """Estimate the common direction of a built model and store it beside its weights."""
    direction = _principal_direction(StaticEncoder(model_dir), background_text())
    path = model_dir / COMMON_FILE
    np.save(path, direction)
    return path


def background_text() -> str:
    import importlib
    import inspect

    docs: dict[str, None] = {}
    for name in BACKGROUND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a trimmed interpreter: the direction comes from what is there
            continue
        for obj in [module, *(v for _, v in sorted(vars(module).items()))]:
            if inspect.ismodule(obj) and obj is not module:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
                continue
            doc = inspect.getdoc(obj)
            if doc and len(doc.split()) > 20:
                docs[" ".join(doc.split())] = None
    return "\n\n".join(docs)


def _principal_direction(
    enc: StaticEncoder, text: str, size: int = 32, stride: int = 8
) -> np.ndarray:
    toks = text.split(" ")
    windows = [" ".join(toks[a : a + size]) for a in range(0, max(1, len(toks) - size + 1), stride)]
    vecs = enc.encode(windows).astype(np.float64)
    _, _, vt = np.linalg.svd(vecs, full_matrices=False)
    direction: np.ndarray = vt[0] * np.sign(vt[0].sum() or 1.0)
    return direction / np.linalg.norm(direction)


def _aligned(st: _Stretch, n: int, i: int, j: int, a: int, b: int) -> bool:
    """Tokens i..j-1 of the stretch are exactly the tokens of text[a:b] encoded alone."""
    if i < n and st.cont[i]:
        return False  # the span starts inside a pre-token
    if i > 0 and st.ends[i - 1] > a:
        return False  # a token straddles the start
    if j > i and st.ends[j - 1] > b:
        return False  # the last token runs past the end
    return not (j < n and st.cont[j])  # the span ends inside a pre-token


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.sqrt((v * v).sum()))
    return (v / norm).astype(np.float32) if norm > 0 else np.zeros(len(v), dtype=np.float32)


# -- distillation (bundle time: torch, transformers, scikit-learn) -------------------------------
def distill(
    minilm_dir: Path,
    out_dir: Path,
    pca_dims: int = PCA_DIMS,
    sif_coefficient: float = SIF_COEFFICIENT,
    batch_size: int = 256,
    progress: Any = None,
) -> dict[str, Any]:
    """Writes model.safetensors, tokenizer.json and config.json into `out_dir`; returns what
    the bundle marker records."""
    import re

    import torch
    from safetensors.numpy import save_file
    from sklearn.decomposition import PCA
    from transformers import AutoModel

    tok = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = tok["model"]["vocab"]
    size = max(vocab.values()) + 1
    special = {t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    unused = re.compile(r"\[unused\d+\]")
    keep = sorted(i for t, i in vocab.items() if i not in special and not unused.fullmatch(t))
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]

    model: Any = AutoModel.from_pretrained(str(minilm_dir))
    model.eval()
    hidden = int(model.config.hidden_size)
    raw = np.zeros((len(keep), hidden), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(keep), batch_size):
            ids = torch.tensor([[cls_id, t, sep_id] for t in keep[start : start + batch_size]])
            out = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=0 * ids
            ).last_hidden_state
            raw[start : start + len(ids)] = out.mean(dim=1).numpy()
            if progress is not None and start % (batch_size * 20) == 0:
                progress(f"tokens {start}/{len(keep)}")
    pca = PCA(n_components=pca_dims, svd_solver="full", random_state=0)
    reduced = pca.fit_transform(raw.astype(np.float64))
    # Zipf by rank among the kept tokens (WordPiece ids are roughly in frequency order).
    inv_rank = 1.0 / np.arange(2, len(keep) + 2)
    proba = inv_rank / inv_rank.sum()
    weights = sif_coefficient / (sif_coefficient + proba)
    table = np.zeros((size, pca_dims), dtype=np.float16)
    table[keep] = (reduced * weights[:, None]).astype(np.float16)

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({TENSOR: table}, str(out_dir / WEIGHTS))
    # No [CLS]/[SEP] at inference (model2vec drops the post-processor), nor padding/truncation.
    tok["post_processor"] = None
    tok["truncation"] = None
    tok["padding"] = None
    (out_dir / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "tokenizer_name": minilm_dir.name,
        "apply_pca": pca_dims,
        "sif_coefficient": sif_coefficient,
        "hidden_dim": pca_dims,
        "seq_length": 1000000,
        "normalize": True,
        "pooling": "mean",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    write_common_direction(out_dir)
    return {
        "method": "model2vec-style distillation (mean-pooled [CLS] t [SEP], PCA, Zipf SIF)",
        "tokens": len(keep),
        "pca_dims": pca_dims,
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 4),
        "sif_coefficient": sif_coefficient,
    }
