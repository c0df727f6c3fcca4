"""The large-corpus verbatim index on a generated catalogue: `python -m bench.corpus_index_bench`.

The catalogue is generated, deterministically and offline: `--books` books of `--book-words`
words drawn with a Zipf law (exponent 1.1) from the whole words of MiniLM's WordPiece
vocabulary (about 20,000), with a sentence end every 8 to 24 words. Measured:
- build: time, size on disk, peak RSS of the building process;
- load: time and RSS added by loading (the Bloom filter in RAM, the rest memory-mapped);
- streamed lookup: per chunk of 4 new words of an answer, the runs that end in them
  (p50/p99 over `--answers` answers of 200 words);
- false positives on 10,000 benign answers (bench.benign, 120 words each): runs that pass
  the Bloom filter (its stated rate) and answers blocked after confirmation (goal: none);
- recall: 1,000 answers with a 12-word span of the catalogue planted at a random place.
Results: bench/results/corpus_index.json (with the load average).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.benign import benign_text
from filters import corpus_index
from filters.corpus_index import CorpusIndex, fast_words

OUT = Path(__file__).resolve().parent / "results" / "corpus_index.json"


def word_list() -> list[str]:
    from filters.encoder import default_model_dir

    vocab = json.loads((default_model_dir() / "tokenizer.json").read_text())["model"]["vocab"]
    return sorted((w for w in vocab if w.isalpha() and w.isascii() and len(w) > 1),
                  key=lambda w: vocab[w])


def books(n_books: int, book_words: int, seed: int = 0) -> Iterator[str]:
    wl = np.asarray(word_list())
    ranks = np.arange(1, len(wl) + 1, dtype=np.float64)
    p = ranks ** -1.1
    p /= p.sum()
    rng = np.random.default_rng(seed)
    for _ in range(n_books):
        ids = rng.choice(len(wl), size=book_words, p=p)
        ws = wl[ids].tolist()
        out, k = [], 0
        while k < len(ws):
            step = int(rng.integers(8, 25))
            out.append(" ".join(ws[k : k + step]).capitalize() + ".")
            k += step
        yield " ".join(out)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--books", type=int, default=2000)
    p.add_argument("--book-words", type=int, default=50_000)
    p.add_argument("--answers", type=int, default=300)
    p.add_argument("--benign", type=int, default=10_000)
    p.add_argument("--planted", type=int, default=1000)
    p.add_argument("--dir", type=Path, default=None, help="index directory (default: a temp dir)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "command": "python -m bench.corpus_index_bench " + " ".join(argv or []),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "books": args.books, "book_words": args.book_words,
    }
    where = args.dir or Path(tempfile.mkdtemp(prefix="lethe-corpus-index-"))
    stats = corpus_index.build(books(args.books, args.book_words), where / "index")
    result["build"] = {"words": stats.words, "vocabulary": stats.vocabulary,
                       "seconds": round(stats.seconds, 1),
                       "disk_mib": round(stats.bytes_on_disk / 2**20, 1),
                       "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                             / 1024, 1),
                       "load_avg": [round(x, 2) for x in os.getloadavg()]}
    print("build", result["build"], flush=True)

    before = rss_mib()
    started = time.perf_counter()
    index = CorpusIndex(where / "index")
    result["load"] = {"seconds": round(time.perf_counter() - started, 2),
                      "rss_added_mib": round(rss_mib() - before, 1),
                      "bloom_mib": round(index.bloom.nbytes / 2**20, 1),
                      "resident_estimate_mib": round(index.resident_bytes() / 2**20, 1)}
    print("load", result["load"], flush=True)

    n = index.n
    rng = random.Random(7)
    per_chunk: list[float] = []
    for a in range(args.answers):
        toks = fast_words(benign_text(200, seed=50_000 + a))
        for end in range(4, len(toks) + 1, 4):
            started = time.perf_counter()
            index.find(toks[max(0, end - 4 - n + 1) : end])
            per_chunk.append(time.perf_counter() - started)
    per_chunk.sort()
    result["stream_lookup_ms_per_chunk"] = {
        "chunks": len(per_chunk),
        "p50": round(1e3 * statistics.median(per_chunk), 4),
        "p99": round(1e3 * per_chunk[int(0.99 * (len(per_chunk) - 1))], 4),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    print("lookup", result["stream_lookup_ms_per_chunk"], flush=True)

    runs = passes = blocked = 0
    for b in range(args.benign):
        toks = fast_words(benign_text(120, seed=100_000 + b))
        ids = index.to_ids(toks)
        maybe = index.maybe(ids)
        runs += len(maybe)
        passes += int(maybe.sum())
        blocked += bool(index.find(toks))
    result["false_positives"] = {"answers": args.benign, "runs": runs,
                                 "bloom_passes": passes,
                                 "bloom_pass_rate": passes / max(runs, 1),
                                 "blocked_after_confirmation": blocked}
    print("false positives", result["false_positives"], flush=True)

    caught = 0
    ids_all = index.ids
    for k in range(args.planted):
        at = rng.randrange(0, len(ids_all) - n)
        words_list = list(index.vocab)
        span = [words_list[int(i)] for i in ids_all[at : at + n]]
        host = fast_words(benign_text(120, seed=200_000 + k))
        cut = rng.randrange(0, len(host))
        caught += bool(index.find(host[:cut] + span + host[cut:]))
    result["recall_planted_12_words"] = {"planted": args.planted, "caught": caught}
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print("recall", result["recall_planted_12_words"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
