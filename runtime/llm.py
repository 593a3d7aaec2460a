"""The LLM on llama.cpp through llama-cpp-python's low-level API, with GEM's injected encoder rows.

A GEM prompt is prefilled in three kinds of batch (a llama_batch holds tokens or embeddings, never both):
prefix ids, then the (ECG + image) rows in chunks of at most n_batch (more aborts the process), then the
suffix ids. The prefix is the same for every request (system prompt + "USER: "), so its KV state is computed
once and reused: later requests only clear the positions after it.

Native handles (model, context, batches) are each owned by a small class that frees it once
(`llama_handles`); `LlamaLLM` holds them and frees them in reverse order in `close()`, as llama-cpp-python's
`_internals` does.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import llama_cpp as L

from .errors import ContextOverflowError, LlmError
from .llama_handles import LlamaBatch, LlamaContext, LlamaModel, init_backend
from .speculate import SpeculationStats

@dataclass
class LlmTimings:
    prefill_ms: float = 0.0
    prefill_positions: int = 0
    prefix_cached: bool = False
    hand_over_ms: float = 0.0     # decode_repacked: the prompt's KV state copied to the decode context (in prefill_ms)
    decode_ms: float = 0.0
    decode_tokens: int = 0
    speculation: SpeculationStats | None = None   # when the decode speculated

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms else 0.0


# --- the LLM ------------------------------------------------------------------------------------------------

class LlamaLLM:
    """One model + one context; not thread-safe (one request at a time, as on a cart).

    eval_tokens / eval_embeddings feed a batch at positions pos.. and return the next position; `logits`
    reads the last computed logits. prefill and generate are GEM's request built on them; prefill_many and
    generate_many run several records as sequences of one context (n_seq > 1: gem-run batch).
    """

    def __init__(self, path: str | Path, *, n_ctx: int = 2048, n_batch: int = 512, n_threads: int = 2,
                 n_gpu_layers: int = 0, exact: bool = False, n_seq: int = 1, flash_attn: bool | None = None,
                 repack: bool = True, decode_repacked: bool = False):
        """exact: parity runs (flash attention off, f32 KV cache). n_ctx: positions per sequence, n_seq of
        them. flash_attn: None lets llama.cpp decide (on, on CPU); off makes the text the same at any thread
        count and in generate_many as in generate (with it on, a one-token decode splits attention across
        threads, and the sums round differently). repack: ggml's CPU weight repacking; whether it pays depends
        on the type and the CPU (`gem-run tune` times both), and off, a K-quant's several-row decode computes
        each row as a one-row decode does (generate_many's logits bit-identical to generate's).
        decode_repacked (with repack off): a second, repacked copy of the weights and a second context, for
        everything after the prompt. Repacking can slow a prompt's many-row matmuls and speed one-row decoding
        (Q4_K_M at gem-7b shape on a Zen 4 EPYC: prefill 1.38x slower, decode 1.26x faster); this takes each
        kernel where it is faster, at the price of the weights' size again in memory and one copy of the prompt's
        KV state per request."""
        self.path, self.n_ctx, self.n_batch, self.n_threads = Path(path), n_ctx, n_batch, n_threads
        self.n_seq, self.repack, self.decode_repacked = n_seq, repack, decode_repacked and not repack
        self._handles: list = []
        if self.decode_repacked and n_seq != 1:
            raise LlmError(f"{self.path}: decoding on repacked weights is for one sequence, not {n_seq}")
        self._prefix_ids: list[int] = []           # the prompt prefix whose KV the prefill context keeps
        self._pending_logits: np.ndarray | None = None   # the prompt's last logits, handed to the decode context
        init_backend()
        try:
            self.model = self._own(LlamaModel(self.path, n_gpu_layers, repack))
            self.context = self._own(LlamaContext(self.path, self.model, n_ctx, n_batch, n_threads, exact, n_seq,
                                              flash_attn))
            self._prefill_context = self._decode_context = self.context
            if self.decode_repacked:
                decode_model = self._own(LlamaModel(self.path, n_gpu_layers, True))
                self._decode_context = self._own(LlamaContext(self.path, decode_model, n_ctx, n_batch, n_threads,
                                                              exact, n_seq, flash_attn))
            self.vocab = L.llama_model_get_vocab(self.model.ptr)
            self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
            self.n_embd = L.llama_model_n_embd(self.model.ptr)
            self.eos_id = L.llama_vocab_eos(self.vocab)
            self._mem = L.llama_get_memory(self.context.ptr)
            self._tokens = self._own(LlamaBatch(n_batch))
            self._rows = self._own(LlamaBatch(n_batch, self.n_embd))
        except BaseException:
            self.close()
            raise

    def _own(self, handle):
        self._handles.append(handle)
        return handle

    def close(self):
        while self._handles:
            self._handles.pop().close()            # batches, then context, then model

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    # --- text ---
    def tokenize(self, text: str, bos: bool = True) -> list[int]:
        """text -> ids with BOS (unless bos=False), SentencePiece dummy prefix, as HF tokenizer(text).input_ids."""
        raw = text.encode()
        size = len(raw) + 8
        while True:
            buf = (L.llama_token * size)()
            n = L.llama_tokenize(self.vocab, raw, len(raw), buf, size, bos, False)
            if n >= 0:
                return list(buf[:n])
            size = -n                                  # llama.cpp says how many it needs

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    # --- feeding batches ---
    def eval_tokens(self, ids: list[int], pos: int, logits: str = "last", seq: int = 0) -> int:
        """Token ids at positions pos..; logits "last", "all" or "none". Returns the next position."""
        for s in range(0, len(ids), self.n_batch):
            chunk = ids[s:s + self.n_batch]
            last = s + len(chunk) == len(ids)
            self._tokens.fill(pos, len(chunk), logits if last or logits == "all" else "none", seq)
            for i, t in enumerate(chunk):
                self._tokens.b.token[i] = t
            pos = self._decode(self._tokens, pos, len(chunk))
        return pos

    def eval_embeddings(self, rows: np.ndarray, pos: int, logits: str = "none", seq: int = 0) -> int:
        """Embedding rows (T, n_embd) at positions pos..: GEM's encoder rows. Returns the next position."""
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise LlmError(f"{self.path}: encoder rows {rows.shape} do not match the LLM width {self.n_embd}")
        rows = np.ascontiguousarray(rows, np.float32)
        for s in range(0, rows.shape[0], self.n_batch):
            chunk = rows[s:s + self.n_batch]
            last = s + chunk.shape[0] == rows.shape[0]
            self._rows.fill(pos, chunk.shape[0], logits if last or logits == "all" else "none", seq)
            ctypes.memmove(self._rows.b.embd, chunk.ctypes.data, chunk.nbytes)
            pos = self._decode(self._rows, pos, chunk.shape[0])
        return pos

    def _decode(self, batch: LlamaBatch, pos: int, n: int) -> int:
        if pos + n > self.n_ctx:
            raise ContextOverflowError(f"{self.path}: position {pos + n} > n_ctx {self.n_ctx}")
        self._run(batch, pos, n)
        return pos + n

    def _run(self, batch: LlamaBatch, pos: int, n: int) -> None:
        self._pending_logits = None
        rc = L.llama_decode(self.context.ptr, batch.b)
        if rc == 1:
            raise ContextOverflowError(f"{self.path}: no KV cache room for {n} positions at {pos} "
                                       f"(n_ctx {self.n_ctx})")
        if rc != 0:
            raise LlmError(f"{self.path}: llama_decode failed with code {rc} at position {pos}")

    def verify(self, ids: list[int], pos: int) -> list[int]:
        """Feed ids at positions pos.. in one llama_decode; the greedy next token after each (speculation's
        check: a drafted token is right where it equals the prediction after the one before it)."""
        self.eval_tokens(ids, pos, "all")
        return [int(np.argmax(self._logits_view(i))) for i in range(len(ids))]

    @property
    def prefix_len(self) -> int:
        """Positions of the prompt prefix whose KV the context keeps for the next request."""
        return len(self._prefix_ids)

    def truncate(self, pos: int) -> None:
        """Forget every position from `pos` on (the KV cache keeps positions < pos)."""
        L.llama_memory_seq_rm(self._mem, 0, pos, -1)
        if pos < len(self._prefix_ids) and self.context is self._prefill_context:
            self._prefix_ids = []

    def use_sequence(self, seq: int) -> None:
        """Sequence `seq` of the last prefill_many / generate_many becomes sequence 0, the one every single-record call
        (truncate, eval_tokens, generate) feeds: sequence 0's KV is replaced by a copy of it (whole: llama.cpp copies
        between KV streams only whole), the others are left as they are."""
        if not 0 <= seq < self.n_seq:
            raise LlmError(f"{self.path}: sequence {seq} of a context of {self.n_seq}")
        if seq:
            L.llama_memory_seq_rm(self._mem, 0, -1, -1)
            L.llama_memory_seq_cp(self._mem, seq, 0, -1, -1)

    def logits(self, i: int = -1) -> np.ndarray:
        """A copy of the logits of batch row i (-1: the last one computed)."""
        return self._logits_view(i).copy()

    def _logits_view(self, i: int = -1) -> np.ndarray:
        """Read in place: valid until the next decode call."""
        if self._pending_logits is not None and i == -1:
            return self._pending_logits
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.context.ptr, i), shape=(self.n_vocab,))

    # --- the sequence's state: a conversation parked while another ECG uses the context ---
    def save_state(self) -> bytes:
        """The KV state of the one sequence (all its positions), as llama.cpp serialises it."""
        size = L.llama_state_seq_get_size(self.context.ptr, 0)
        buf = (ctypes.c_uint8 * size)()
        written = L.llama_state_seq_get_data(self.context.ptr, buf, size, 0)
        if written != size:
            raise LlmError(f"{self.path}: llama.cpp wrote {written} of {size} state bytes")
        return bytes(buf)

    def restore_state(self, state: bytes, prefix_ids: list[int]) -> None:
        """Put a saved sequence back in place of the current one; `prefix_ids`: the prompt prefix it starts with
        (so the next request still reuses the prefix's KV). With decode_repacked it goes to the decode context,
        and the prefill context keeps its prefix."""
        self._use(self._decode_context)
        self._set_state(state)
        if not self.decode_repacked:
            self._prefix_ids = list(prefix_ids)

    def _set_state(self, state: bytes) -> None:
        L.llama_memory_clear(self._mem, True)
        if self.context is self._prefill_context:
            self._prefix_ids = []
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if L.llama_state_seq_set_data(self.context.ptr, buf, len(state), 0) == 0:
            raise LlmError(f"{self.path}: llama.cpp could not restore a saved sequence state")

    def _use(self, context: LlamaContext) -> None:
        """Make `context` the one every call feeds and reads (decode_repacked: the prefill's or the decode's)."""
        self.context, self._mem = context, L.llama_get_memory(context.ptr)

    def _hand_over(self) -> None:
        """decode_repacked: the prompt's KV state and its last logits from the prefill context to the decode one,
        through one buffer (at gem-7b shape the state of a GEM prompt is ~350 MB)."""
        logits = self._logits_view().copy()
        src = self.context.ptr
        size = L.llama_state_seq_get_size(src, 0)
        buf = (ctypes.c_uint8 * size)()
        if L.llama_state_seq_get_data(src, buf, size, 0) != size:
            raise LlmError(f"{self.path}: llama.cpp could not copy the prompt's state ({size} bytes)")
        self._use(self._decode_context)
        L.llama_memory_clear(self._mem, True)
        if L.llama_state_seq_set_data(self.context.ptr, buf, size, 0) == 0:
            raise LlmError(f"{self.path}: llama.cpp could not hand the prompt's state to the decode context")
        self._pending_logits = logits

    # --- GEM's request ---
    def prefill(self, prefix: list[int], rows: np.ndarray, suffix: list[int], timings: LlmTimings,
                all_logits: bool = False, reuse_prefix: bool = True) -> int:
        """Prefix ids (KV reused when unchanged), encoder rows (T, n_embd), suffix ids. Returns the next position."""
        total = len(prefix) + rows.shape[0] + len(suffix)
        if total >= self.n_ctx:
            raise ContextOverflowError(f"prompt {len(prefix) + len(suffix)} tok + {rows.shape[0]} embeddings "
                                       f">= n_ctx {self.n_ctx}")
        t0 = time.perf_counter()
        self._use(self._prefill_context)
        logits = "all" if all_logits else "none"
        for seq in range(1, self.n_seq):                    # what a prefill_many left in the others
            L.llama_memory_seq_rm(self._mem, seq, 0, -1)
        if reuse_prefix and prefix == self._prefix_ids and not all_logits:
            self.truncate(len(prefix))                      # keep the prefix, drop the last request
            timings.prefix_cached = True
        else:
            L.llama_memory_clear(self._mem, True)
            self._prefix_ids = []
            self.eval_tokens(prefix, 0, logits)
            self._prefix_ids = list(prefix)
        pos = self.eval_embeddings(rows, len(prefix), logits)
        pos = self.eval_tokens(suffix, pos, "all" if all_logits else "last")
        if self.decode_repacked and not all_logits:
            t1 = time.perf_counter()
            self._hand_over()
            timings.hand_over_ms = (time.perf_counter() - t1) * 1000
        timings.prefill_ms = (time.perf_counter() - t0) * 1000
        timings.prefill_positions = total
        return pos

    def generate(self, pos: int, max_new_tokens: int, timings: LlmTimings, ignore_eos: bool = False,
                 on_token: Callable[[int], None] | None = None) -> list[int]:
        """Greedy decoding (GEM: temperature 0) after prefill, to EOS, the limit or the end of the context."""
        out: list[int] = []
        t0 = time.perf_counter()
        # one token per step in the reused batch: set up once, then only its id and position change (going
        # through eval_tokens per token cost ~0.04 ms, 7% of a demo-model step)
        step = self._tokens
        step.fill(pos, 1, "last")
        tok = int(np.argmax(self._logits_view()))
        for _ in range(max_new_tokens):
            if tok == self.eos_id and not ignore_eos:
                break
            out.append(tok)
            if on_token is not None:
                on_token(tok)
            if pos + 1 >= self.n_ctx or len(out) == max_new_tokens:
                break
            step.b.token[0], step.b.pos[0] = tok, pos
            pos = self._decode(step, pos, 1)
            tok = int(np.argmax(self._logits_view()))
        timings.decode_ms = (time.perf_counter() - t0) * 1000
        timings.decode_tokens = len(out)
        return out

    # --- several records at once: sequence k of the context is record k ---
    def prefill_many(self, prefix: list[int], rows: list[np.ndarray], suffix: list[int],
                     timings: list[LlmTimings]) -> tuple[list[int], list[int]]:
        """Record k's prompt as sequence k (the prefix's KV computed once, or kept from the last request, and
        shared by every sequence): (each one's next position, each one's first token)."""
        if not 0 < len(rows) <= self.n_seq:
            raise LlmError(f"{self.path}: {len(rows)} records for a context of {self.n_seq} sequences")
        first = LlmTimings()
        self.prefill(prefix, rows[0], suffix, first)        # sequence 0, as a single request is
        positions, tokens = [first.prefill_positions], [int(np.argmax(self._logits_view()))]
        timings[0].prefill_ms, timings[0].prefill_positions = first.prefill_ms, first.prefill_positions
        timings[0].prefix_cached = first.prefix_cached
        for k in range(1, len(rows)):
            t0 = time.perf_counter()
            # llama.cpp copies between KV streams only whole (prefill emptied sequence k): sequence 0's, then all
            # but the prefix dropped
            L.llama_memory_seq_cp(self._mem, 0, k, -1, -1)
            L.llama_memory_seq_rm(self._mem, k, len(prefix), -1)
            pos = self.eval_embeddings(rows[k], len(prefix), "none", seq=k)
            positions.append(self.eval_tokens(suffix, pos, "last", seq=k))
            tokens.append(int(np.argmax(self._logits_view())))
            timings[k].prefill_ms = (time.perf_counter() - t0) * 1000
            timings[k].prefill_positions, timings[k].prefix_cached = positions[-1], True
        self._prefix_ids = list(prefix)
        return positions, tokens

    def generate_many(self, positions: list[int], first: list[int], max_new_tokens: int,
                      timings: list[LlmTimings], ignore_eos: bool = False) -> list[list[int]]:
        """Greedy decoding of the sequences prefill_many left, one token of each unfinished sequence per
        llama_decode; each stops as `generate` would (EOS, the limit, the end of the context). Each record's
        decode time is the whole loop's: it waits for the others."""
        out: list[list[int]] = [[] for _ in positions]
        pos, tok = list(positions), list(first)
        step = self._tokens
        t0 = time.perf_counter()
        live = list(range(len(positions)))
        while live:
            going = []
            for k in live:
                if tok[k] == self.eos_id and not ignore_eos:
                    continue
                out[k].append(tok[k])
                if pos[k] + 1 < self.n_ctx and len(out[k]) < max_new_tokens:
                    going.append(k)
            live = going
            if not live:
                break
            step.b.n_tokens = len(live)
            for i, k in enumerate(live):
                step.b.token[i], step.b.pos[i], step.b.seq_id[i][0], step.b.logits[i] = tok[k], pos[k], k, 1
                pos[k] += 1
            self._run(step, min(pos), len(live))
            for i, k in enumerate(live):
                tok[k] = int(np.argmax(self._logits_view(i)))
        ms = (time.perf_counter() - t0) * 1000
        for t, ids in zip(timings, out):
            t.decode_ms, t.decode_tokens = ms, len(ids)
        return out


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
