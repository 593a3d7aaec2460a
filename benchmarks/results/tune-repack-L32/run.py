"""gem-run tune's repacking choice alone (runtime/tune.py `_faster_repack`: on, off, and the prompt unrepacked with
decoding repacked where each is faster at its part) for Q4_K_M of the 32-layer GEM-7B-shape bundle, 2 threads,
2 runs after a warm-up each. The whole `gem-run tune` on this bundle (every type, every draft length) takes hours.
    python benchmarks/results/tune-repack-L32/run.py work/footprint/gem7b-L32 > benchmarks/results/tune-repack-L32/log.txt
"""
import sys

import numpy as np

from gem_runtime.bundle import Bundle
from gem_runtime.tune import _faster_repack

best = _faster_repack(Bundle.open(sys.argv[1]), "q4_k_m", 2, 2, np.random.default_rng(0), print)
print(f"chosen: {best}")
