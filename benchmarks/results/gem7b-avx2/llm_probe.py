"""The probe of benchmarks/README.md's AVX2 section: a GGUF on our LlamaLLM, 758 prompt positions then 64 decode
steps, twice, to compare per-layer cost at 2 and 4 layers with either ggml build (LLAMA_CPP_LIB_PATH picks one).

    python benchmarks/results/gem7b-avx2/llm_probe.py work/avx2/gem7b-L4/bundle/llm-q4_k_m.gguf
"""
import sys
import time

import numpy as np

from gem_runtime.llm import LlamaLLM

path = sys.argv[1]
llm = LlamaLLM(path, n_ctx=1024, n_batch=512, n_threads=2, repack=True)
ids = [int(i) for i in np.random.default_rng(0).integers(100, 30000, 758)]
for _ in range(2):
    llm.truncate(0)
    t0 = time.perf_counter()
    llm.eval_tokens(ids, 0)
    t1 = time.perf_counter()
    for k in range(64):
        llm.eval_tokens([ids[k]], len(ids) + k)
    t2 = time.perf_counter()
    print(f"{path}: prefill {1000 * (t1 - t0):.0f} ms, decode {1000 * (t2 - t1) / 64:.1f} ms/token", flush=True)
llm.close()
