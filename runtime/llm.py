"""The LLM on llama.cpp through llama-cpp-python's low-level API, with GEM's injected encoder rows.

A GEM prompt is prefilled in three kinds of batch (a llama_batch holds tokens or embeddings, never both):
prefix ids, then the (ECG + image) rows in chunks of at most n_batch (more aborts the process), then the
suffix ids. The prefix is the same for every request (system prompt + "USER: "), so its KV state is computed
once and reused: later requests only clear the positions after it.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

import llama_cpp as L

_backend_ready = False


def _init_backend():
    global _backend_ready
    if not _backend_ready:
        L.llama_backend_init()
        L.llama_log_set(_silent_log, ctypes.c_void_p())
        _backend_ready = True


@L.llama_log_callback
def _silent_log(level, text, user_data):  # llama.cpp's own chatter would interleave with streamed text
    if os.environ.get("GEM_LLAMA_VERBOSE"):
        print(text.decode(errors="replace"), end="")


@dataclass
class LlmTimings:
    prefill_ms: float = 0.0
    prefill_positions: int = 0
    prefix_cached: bool = False
    decode_ms: float = 0.0
    decode_tokens: int = 0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms else 0.0


@dataclass
class LlamaLLM:
    """One model + one context; not thread-safe (one request at a time, as on a cart)."""
    path: Path
    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int = 2
    n_gpu_layers: int = 0
    exact: bool = False          # parity runs: flash attention off, f32 KV cache
    _prefix_ids: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self):
        _init_backend()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = self.n_gpu_layers
        self.model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"{self.path}: llama.cpp could not load the model")
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = self.n_ctx, self.n_batch, self.n_batch
        cp.n_threads = cp.n_threads_batch = self.n_threads
        if self.exact:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
            cp.type_k = cp.type_v = L.GGML_TYPE_F32
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"{self.path}: llama.cpp could not create a context")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.n_embd = L.llama_model_n_embd(self.model)
        self.eos_id = L.llama_vocab_eos(self.vocab)
        self.mem = L.llama_get_memory(self.ctx)

    def close(self):
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            L.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        self.close()

    # --- text ---
    def tokenize(self, text: str) -> list[int]:
        """text -> ids with BOS, SentencePiece dummy prefix, as HF tokenizer(text).input_ids."""
        raw = text.encode()
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, False)
        if n < 0:
            raise RuntimeError(f"tokenize: buffer too small ({-n})")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    # --- decoding ---
    def _decode(self, pos0: int, ids=None, embd: np.ndarray | None = None, logits_last=True, all_logits=False) -> int:
        n = len(ids) if ids is not None else embd.shape[0]
        batch = L.llama_batch_init(n, 0 if embd is None else self.n_embd, 1)
        try:
            if embd is None:
                for i, t in enumerate(ids):
                    batch.token[i] = t
            else:
                e = np.ascontiguousarray(embd, np.float32)
                ctypes.memmove(batch.embd, e.ctypes.data, e.nbytes)
            batch.n_tokens = n
            for i in range(n):
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = int(all_logits or (logits_last and i == n - 1))
            rc = L.llama_decode(self.ctx, batch)
        finally:
            L.llama_batch_free(batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} at position {pos0}")
        return pos0 + n

    def _decode_chunks(self, pos: int, ids=None, embd=None, logits_last=True, all_logits=False) -> int:
        """Keep every batch within n_batch: a larger one aborts the process (GGML_ASSERT)."""
        n = len(ids) if ids is not None else embd.shape[0]
        for s in range(0, n, self.n_batch):
            e = min(n, s + self.n_batch)
            last = e == n
            pos = self._decode(pos, ids=None if ids is None else ids[s:e], embd=None if embd is None else embd[s:e],
                               logits_last=logits_last and last, all_logits=all_logits)
        return pos

    def logits(self, i: int = -1) -> np.ndarray:
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)).copy()

    def prefill(self, prefix: list[int], rows: np.ndarray, suffix: list[int], timings: LlmTimings,
                all_logits: bool = False) -> int:
        """Prefix ids (KV reused when unchanged), encoder rows (T, n_embd), suffix ids. Returns the next position."""
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise ValueError(f"encoder rows {rows.shape} do not match the LLM width {self.n_embd}")
        total = len(prefix) + rows.shape[0] + len(suffix)
        if total >= self.n_ctx:
            raise ValueError(f"prompt {len(prefix) + len(suffix)} tok + {rows.shape[0]} embeddings >= n_ctx {self.n_ctx}")
        t0 = time.perf_counter()
        if prefix == self._prefix_ids and not all_logits:
            L.llama_memory_seq_rm(self.mem, 0, len(prefix), -1)     # keep the prefix, drop the last request
            timings.prefix_cached = True
        else:
            L.llama_memory_clear(self.mem, True)
            self._decode_chunks(0, ids=prefix, logits_last=False, all_logits=all_logits)
            self._prefix_ids = list(prefix)
        pos = self._decode_chunks(len(prefix), embd=rows, logits_last=False, all_logits=all_logits)
        pos = self._decode_chunks(pos, ids=suffix, all_logits=all_logits)
        timings.prefill_ms = (time.perf_counter() - t0) * 1000
        timings.prefill_positions = total
        return pos

    def generate(self, pos: int, max_new_tokens: int, timings: LlmTimings, ignore_eos: bool = False,
                 on_token: Callable[[int], None] | None = None) -> list[int]:
        """Greedy decoding (GEM: temperature 0) after prefill, to EOS or the limit."""
        out: list[int] = []
        t0 = time.perf_counter()
        # one batch of one token, reused: per token only its id and position change (a fresh batch per
        # token and a copy of the logits cost ~0.1 ms, a quarter of a demo-model step)
        batch = L.llama_batch_init(1, 0, 1)
        batch.n_tokens, batch.n_seq_id[0], batch.seq_id[0][0], batch.logits[0] = 1, 1, 0, 1
        try:
            tok = int(np.argmax(self._logits_view()))
            for _ in range(max_new_tokens):
                if tok == self.eos_id and not ignore_eos:
                    break
                out.append(tok)
                if on_token is not None:
                    on_token(tok)
                if pos + 1 >= self.n_ctx or len(out) == max_new_tokens:
                    break
                batch.token[0], batch.pos[0] = tok, pos
                rc = L.llama_decode(self.ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed with code {rc} at position {pos}")
                pos += 1
                tok = int(np.argmax(self._logits_view()))
        finally:
            L.llama_batch_free(batch)
        timings.decode_ms = (time.perf_counter() - t0) * 1000
        timings.decode_tokens = len(out)
        return out

    def _logits_view(self) -> np.ndarray:
        """The last position's logits, read in place (valid until the next decode call)."""
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))


class TextStream:
    """Turns token pieces into text as they come, holding back incomplete UTF-8 sequences."""

    def __init__(self, llm: LlamaLLM, write: Callable[[str], None]):
        self.llm, self.write, self.buf, self.first = llm, write, b"", True

    def __call__(self, token: int):
        piece = self.llm.piece(token)
        if self.first:                        # the dummy-prefix space of the first word
            piece, self.first = piece.lstrip(b" "), False
        self.buf += piece
        try:
            text = self.buf.decode()
        except UnicodeDecodeError:
            return
        self.buf = b""
        self.write(text)
