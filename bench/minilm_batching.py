"""Does batching MiniLM's candidate windows pay, and do batched vectors stay the same?
`python -m bench.minilm_batching` (exports an fp32 ONNX graph to /tmp first, once).

96 windows of a 1,500-word benign prompt through the bundled int8 ONNX MiniLM and an fp32
export of the same graph: one window per run, padded batches of 32, and batches of 32 of
windows with the same token count (no padding). Prints ms per window and whether the batched
vectors equal the one-by-one vectors bit for bit. Measured 2026-12-02 at load average 22
(bench/results/minilm_batching.json): int8 one per run 7.8-8.3 ms/window, padded batches
13.6-14.2, same-length batches 6.1-6.4 but vectors moved by up to 0.034 (dynamic int8 takes
one activation scale per batch); fp32 one per run 21-22 ms, same-length batches 15-17 ms and
still not bit-identical (1e-7). So the filters keep one int8 run per window: batching saves
at best a quarter and makes a window's score depend on its neighbours.
"""
# ruff: noqa
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from filters.encoder import _mean_pooled, Encoder
    from transformers import AutoModel
    import onnxruntime as ort
    from tokenizers import Tokenizer
    from filters.encoder import default_model_dir

    md = default_model_dir()
    fp32 = Path("/tmp/w14/fp32.onnx")
    if not fp32.exists():
        model = AutoModel.from_pretrained(str(md), attn_implementation="eager"); model.eval()
        pooled = _mean_pooled(model)
        ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]])
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embeddings": {0: "batch"}}
        with torch.inference_mode():
            torch.onnx.export(pooled, (ids, (ids != 0).long(), torch.zeros_like(ids)), str(fp32),
                input_names=names, output_names=["embeddings"], dynamic_axes=axes, opset_version=17, dynamo=False)
    from bench.benign import benign_text
    from filters.windows import text_spans
    text = benign_text(1500, 1)
    spans = text_spans(text, 32, 8)
    wins = [text[a:b] for a, b in spans][:96]
    tok = Tokenizer.from_file(str(md / "tokenizer.json")); tok.enable_truncation(256); tok.no_padding()
    def sess(path):
        o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    s32 = sess(fp32); s8 = sess(md / "onnx" / "model_int8.onnx")
    encs = tok.encode_batch(wins)
    def run(s, group):
        L = max(len(encs[i].ids) for i in group)
        ids = np.zeros((len(group), L), np.int64); mask = np.zeros_like(ids)
        for r, i in enumerate(group):
            e = encs[i].ids; ids[r, :len(e)] = e; mask[r, :len(e)] = 1
        return s.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})[0]
    def alone(s): return np.stack([run(s, [i])[0] for i in range(len(wins))])
    def padded(s, bs):
        out = []
        for k in range(0, len(wins), bs): out.append(run(s, list(range(k, min(k + bs, len(wins))))))
        return np.concatenate(out)
    def bucketed(s, bs):
        out = np.zeros((len(wins), 384), np.float32)
        by: dict[int, list[int]] = {}
        for i, e in enumerate(encs): by.setdefault(len(e.ids), []).append(i)
        for L, idx in by.items():
            for k in range(0, len(idx), bs):
                g = idx[k:k + bs]; out[g] = run(s, g)
        return out, len(by)
    for name, s in (("int8", s8), ("fp32", s32)):
        for rep in range(2):
            t = time.perf_counter(); a = alone(s); ta = time.perf_counter() - t
            t = time.perf_counter(); p = padded(s, 32); tp = time.perf_counter() - t
            t = time.perf_counter(); b, nb = bucketed(s, 32); tb = time.perf_counter() - t
            print(f"{name} rep{rep}: alone {1e3*ta/len(wins):.2f} ms/win, padded32 {1e3*tp/len(wins):.2f}, bucketed {1e3*tb/len(wins):.2f} ({nb} lengths); "
                  f"padded==alone {np.array_equal(a,p)} maxdiff {np.abs(a-p).max():.2e}; bucketed==alone {np.array_equal(a,b)} maxdiff {np.abs(a-b).max():.2e}; load {os.getloadavg()[0]:.1f}", flush=True)
    ref = alone(s8); f = alone(s32)
    print("fp32 vs int8 min cos", float((ref * f).sum(1).min()))


if __name__ == "__main__":
    main()
