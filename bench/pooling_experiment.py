"""Would one encoder pass per long prompt, pooled per window, replace per-window encodes?

`python -m bench.pooling_experiment` plants a Harry Potter exemplar (a hit) or a near-miss in
~160 words of the unlearning corpus's general text, then scores the sliding windows the
embedding filter would use two ways: each window encoded on its own (what the filter does),
and the token vectors of one pass over the whole prompt mean-pooled per window. It prints the
best cosine to the exemplars both ways and how close the two window vectors are.

Measured 2026-11-23 (fp32 sentence-transformers, 30 prompts): the pooled window vectors had
cosine 0.32-0.73 to the isolated ones; a planted hit's best exemplar cosine fell from
0.62-0.92 to 0.41-0.77, and 2 of 15 fell below the policy threshold 0.45. Tokens carry their
context, so pooled windows are a different (worse separated) score that would need its own
calibration: rejected as a drop-in for the prompt check's latency.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from filters.encoder import default_model_dir
from filters.normalize import words
from filters.windows import window_starts

ROOT = Path(__file__).resolve().parent.parent


def _lines(path: Path) -> list[str]:
    return [s.strip() for s in path.read_text().splitlines() if s.strip() and s[0] != "#"]


def main() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    exemplars = _lines(ROOT / "policies/data/harry-potter-exemplars.txt")
    near = _lines(ROOT / "policies/data/harry-potter-near-misses.txt")
    benign = (ROOT / "unlearning/data/general.txt").read_text().split()
    ex_vecs = model.encode(exemplars, normalize_embeddings=True)

    def pooled(text: str, spans: list[tuple[int, int]]) -> np.ndarray:
        enc = model.tokenizer(text, return_offsets_mapping=True, truncation=True,
                              max_length=256, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            transformer: Any = model[0].auto_model
            hidden = transformer(**enc).last_hidden_state[0].numpy()
        rows = []
        for a, b in spans:
            keep = [i for i, (s, e) in enumerate(offsets) if e > s and s >= a and e <= b]
            v = hidden[keep].mean(0)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)

    rng = random.Random(0)
    print("kind  best-cos isolated  best-cos pooled  min cos(isolated, pooled)")
    for k in range(30):
        planted = exemplars[k % len(exemplars)] if k % 2 == 0 else near[k % len(near)]
        start = rng.randrange(0, len(benign) - 200)
        text = " ".join([*benign[start : start + 80], planted, *benign[start + 80 : start + 160]])
        ws = words(text)
        starts = window_starts(len(ws), 32, 8)
        spans = [(ws[s].start, ws[min(s + 32, len(ws)) - 1].end) for s in starts]
        iso = model.encode([text[a:b] for a, b in spans], normalize_embeddings=True)
        pool = pooled(text, spans)
        print(f"{'hit ' if k % 2 == 0 else 'near'}  {(iso @ ex_vecs.T).max():.3f}"
              f"              {(pool @ ex_vecs.T).max():.3f}            "
              f"{(iso * pool).sum(1).min():.3f}")


if __name__ == "__main__":
    main()
