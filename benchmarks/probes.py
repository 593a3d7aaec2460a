"""Small llama.cpp probes behind the reading in benchmarks/README.md (why the goals are missed).

    python -m benchmarks.probes batch --gguf bundles/demo/llm-q4_k_m.gguf
        cost of one llama_decode of 1..16 tokens after a 290-position prompt: does verifying several drafted
        tokens at once (speculative / lookup decoding) cost about one step, or k steps?
    python -m benchmarks.probes quants --f16 work/bench/gem7b-L2/bundle/llm-f16.gguf --types Q4_K_M Q4_0 Q8_0
        prefill of a GEM prompt (30 ids + 677 rows + 30 ids) and decode ms/token for each llama.cpp type,
        quantized from the f16 file next to it (kept as <f16 stem>-<type>.gguf)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import llama_cpp as L
from gem_runtime.llm import LlamaLLM, LlmTimings


def decode_batch_costs(gguf: Path, threads: int, sizes=(1, 2, 4, 8, 16), reps: int = 60) -> dict[int, float]:
    """Median ms of one llama_decode of k tokens (logits for all k) at the end of a 290-position prompt."""
    llm = LlamaLLM(gguf, n_threads=threads)
    rows = np.random.default_rng(0).normal(0, 0.02, (250, llm.n_embd)).astype(np.float32)
    ids = llm.tokenize("A chat between a curious human and an artificial intelligence assistant. " * 6)
    pos = llm.prefill(ids[:20], rows, ids[20:40], LlmTimings())
    out = {}
    for k in sizes:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            llm.eval_tokens([5 + i for i in range(k)], pos, logits="all")
            times.append(time.perf_counter() - t0)
            llm.truncate(pos)
        out[k] = float(np.median(times) * 1000)
    llm.close()
    return out


def quant_costs(f16: Path, types: list[str], threads: int, rows: int = 677, tokens: int = 16) -> dict[str, dict]:
    out = {}
    for name in types:
        path = f16 if name.upper() == "F16" else f16.with_name(f"{f16.stem}-{name.lower()}.gguf")
        if not path.exists():
            p = L.llama_model_quantize_default_params()
            p.ftype, p.nthread = getattr(L, f"LLAMA_FTYPE_MOSTLY_{name.upper()}"), threads
            if L.llama_model_quantize(str(f16).encode(), str(path).encode(), p) != 0:
                raise RuntimeError(f"{f16}: llama.cpp could not quantize to {name}")
        llm = LlamaLLM(path, n_threads=threads)
        ids = llm.tokenize("A chat between a curious human and an artificial intelligence assistant. " * 2)
        x = np.random.default_rng(0).normal(0, 0.02, (rows, llm.n_embd)).astype(np.float32)
        prefill = []
        for _ in range(2):                              # the first pass also pages the weights in
            t = LlmTimings()
            pos = llm.prefill(ids[:30], x, ids[30:60], t, reuse_prefix=False)   # the whole prompt each time
            prefill.append(t.prefill_ms)
        positions = t.prefill_positions
        t = LlmTimings()
        llm.generate(pos, tokens, t, ignore_eos=True)
        out[name] = {"prefill_ms": round(min(prefill), 1), "positions": positions,
                     "decode_ms_per_token": round(t.decode_ms / tokens, 2), "bytes": path.stat().st_size}
        llm.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="probe", required=True)
    b = sub.add_parser("batch")
    b.add_argument("--gguf", type=Path, required=True)
    b.add_argument("--threads", type=int, default=2)
    q = sub.add_parser("quants")
    q.add_argument("--f16", type=Path, required=True)
    q.add_argument("--types", nargs="+", default=["Q4_K_M", "Q4_0", "Q8_0", "F16"])
    q.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.probe == "batch":
        costs = decode_batch_costs(a.gguf, a.threads)
        one = costs[1]
        print(f"{a.gguf}, {a.threads} threads: one llama_decode of k tokens")
        for k, ms in costs.items():
            print(f"  k={k:2d}: {ms:6.3f} ms = {ms / one:4.2f} x one token, {ms / k:6.3f} ms per token")
    else:
        print(f"{a.f16}, {a.threads} threads: GEM-shaped prefill and decode per llama.cpp type")
        for name, r in quant_costs(a.f16, a.types, a.threads).items():
            print(f"  {name:7s} {r['bytes'] / 1e6:8.1f} MB  prefill {r['prefill_ms']:8.1f} ms ({r['positions']} positions)  "
                  f"decode {r['decode_ms_per_token']:7.2f} ms/token")


if __name__ == "__main__":
    main()
