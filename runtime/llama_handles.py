"""llama.cpp's native handles, each owned by a small class that frees it once (as llama-cpp-python's
`_internals`): the model, a context, a batch. `gem_runtime.llm.LlamaLLM` holds them and frees them in reverse
order. Also the process-wide backend set-up, done once, with llama.cpp's own log silenced unless
GEM_LLAMA_VERBOSE is set."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llama_cpp as L

from .errors import ModelLoadError

_backend_ready = False


def init_backend():
    global _backend_ready
    if not _backend_ready:
        L.llama_backend_init()
        L.llama_log_set(_silent_log, ctypes.c_void_p())
        _backend_ready = True


@L.llama_log_callback
def _silent_log(level, text, user_data):  # llama.cpp's own chatter would interleave with streamed text
    if os.environ.get("GEM_LLAMA_VERBOSE"):
        print(text.decode(errors="replace"), end="")


def has_gpu_offload() -> bool:
    return bool(L.llama_supports_gpu_offload())


class LlamaModel:
    def __init__(self, path: Path, n_gpu_layers: int, repack: bool = True):
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        mp.use_extra_bufts = repack        # ggml's CPU weight repacking (interleaved rows for its gemm kernels)
        self.ptr = L.llama_model_load_from_file(str(path).encode(), mp)
        if not self.ptr:
            raise ModelLoadError(path, "llama.cpp could not load this GGUF file "
                                       "(set GEM_LLAMA_VERBOSE=1 to see llama.cpp's reason)")

    def close(self):
        if self.ptr:
            L.llama_model_free(self.ptr)
            self.ptr = None


class LlamaContext:
    def __init__(self, path: Path, model: LlamaModel, n_ctx: int, n_batch: int, n_threads: int, exact: bool,
                 n_seq: int = 1, flash_attn: bool | None = None):
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = n_ctx * n_seq, n_batch, n_batch
        cp.n_threads = cp.n_threads_batch = n_threads
        # one KV stream per sequence, laid out as a lone request's (a unified cache interleaves the records, and
        # their attention rounds differently)
        cp.n_seq_max, cp.kv_unified = n_seq, False
        if flash_attn is not None:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if exact:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
            cp.type_k = cp.type_v = L.GGML_TYPE_F32
        self.ptr = L.llama_init_from_model(model.ptr, cp)
        if not self.ptr:
            raise ModelLoadError(path, f"llama.cpp could not create a context of {n_seq} x {n_ctx} positions "
                                       "(out of memory?)")

    def close(self):
        if self.ptr:
            L.llama_free(self.ptr)
            self.ptr = None


class LlamaBatch:
    """A llama_batch of up to `capacity` tokens (n_embd == 0) or embedding rows, reused."""

    def __init__(self, capacity: int, n_embd: int = 0):
        self.capacity, self.n_embd = capacity, n_embd
        self.b = L.llama_batch_init(capacity, n_embd, 1)
        for i in range(capacity):
            self.b.n_seq_id[i], self.b.seq_id[i][0] = 1, 0

    def fill(self, pos0: int, n: int, logits: str, seq: int = 0) -> None:
        """n rows of sequence `seq` at positions pos0..: logits "all", "last" or "none"."""
        b = self.b
        b.n_tokens = n
        for i in range(n):
            b.pos[i], b.seq_id[i][0] = pos0 + i, seq
            b.logits[i] = int(logits == "all" or (logits == "last" and i == n - 1))

    def close(self):
        if self.b is not None:
            L.llama_batch_free(self.b)
            self.b = None
