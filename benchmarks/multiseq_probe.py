"""Probe: greedy decoding of 4 ECGs as 4 sequences in one llama_decode per step (issue 15's batched decode)
against each decoded alone, token by token: are the outputs identical?

    python -m benchmarks.multiseq_probe [BUNDLE] [NEW_TOKENS]

Uses the Interpreter's stages to get each record's encoder rows, then its own multi-sequence context (n_seq_max 4,
unified KV) on the same model. Not a runtime path: it answers whether one can be built.
"""
import ctypes
import sys
import time
import llama_cpp as L
import numpy as np
from pydicom.data import get_testdata_file

from gem_runtime import Interpreter
from gem_runtime import constants as K
from gem_runtime.prompt import build_prompt, prompt_ids
from gem_runtime.timings import Timings

bundle = sys.argv[1] if len(sys.argv) > 1 else "bundles/demo"
NSEQ, NEW = 4, int(sys.argv[2]) if len(sys.argv) > 2 else 64
files = [get_testdata_file("waveform_ecg.dcm"), "/work/shared/data/vendor/philips_129DYPRG.xml",
         "/work/shared/data/physionet/s0010_re.hea", get_testdata_file("waveform_ecg.dcm")]
gem = Interpreter.load(bundle, threads=2)
single, rows_all = [], []
t0 = time.perf_counter()
for f in files:
    r = gem.interpret(f, max_new_tokens=NEW, ignore_eos=True)
    single.append(r.token_ids)
t_single = time.perf_counter() - t0
# the rows for each record (as interpret computes them)
for f in files:
    t = Timings()
    rec, img = gem._read(f, None, None, t)
    prep = gem._prepare(rec, img, None, t)
    rows_all.append(gem._encode(prep, t))
ids = prompt_ids(build_prompt(K.DEFAULT_QUESTION), gem.llm.tokenize)
s = ids.index(K.IMAGE_TOKEN_INDEX)
prefix, suffix = ids[:s], ids[s + 1:]
llm = gem.llm
# a multi-sequence context
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 4096, 512, 512, NSEQ
cp.n_threads = cp.n_threads_batch = 2
cp.kv_unified = True
ctx = L.llama_init_from_model(llm.model.ptr, cp)
mem = L.llama_get_memory(ctx)
n_embd = llm.n_embd
batch = L.llama_batch_init(512, 0, 1)
ebatch = L.llama_batch_init(512, n_embd, 1)

def decode(b):
    rc = L.llama_decode(ctx, b); assert rc == 0, rc

def feed_tokens(toks, pos, seq, last_logits=True):
    for s0 in range(0, len(toks), 512):
        ch = toks[s0:s0+512]; batch.n_tokens = len(ch)
        for i, tk in enumerate(ch):
            batch.token[i] = tk; batch.pos[i] = pos + s0 + i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = seq
            batch.logits[i] = int(last_logits and s0 + i == len(toks) - 1)
        decode(batch)
    return pos + len(toks)

def feed_rows(rows, pos, seq):
    rows = np.ascontiguousarray(rows, np.float32)
    for s0 in range(0, rows.shape[0], 512):
        ch = rows[s0:s0+512]; ebatch.n_tokens = ch.shape[0]
        for i in range(ch.shape[0]):
            ebatch.pos[i] = pos + s0 + i; ebatch.n_seq_id[i] = 1; ebatch.seq_id[i][0] = seq; ebatch.logits[i] = 0
        ctypes.memmove(ebatch.embd, ch.ctypes.data, ch.nbytes)
        decode(ebatch)
    return pos + rows.shape[0]

def logits(i):
    return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(llm.n_vocab,))

t0 = time.perf_counter()
pos, tok = [], []
for k, rows in enumerate(rows_all):
    p = feed_tokens(prefix, 0, k, False)
    p = feed_rows(rows, p, k)
    p = feed_tokens(suffix, p, k, True)
    pos.append(p); tok.append(int(np.argmax(logits(-1))))
t_prefill = time.perf_counter() - t0
out = [[] for _ in rows_all]
t0 = time.perf_counter()
for step in range(NEW):
    for k in range(NSEQ):
        out[k].append(tok[k])
    if step == NEW - 1:
        break
    batch.n_tokens = NSEQ
    for k in range(NSEQ):
        batch.token[k] = tok[k]; batch.pos[k] = pos[k]; batch.n_seq_id[k] = 1; batch.seq_id[k][0] = k; batch.logits[k] = 1
        pos[k] += 1
    decode(batch)
    tok = [int(np.argmax(logits(k))) for k in range(NSEQ)]
t_decode = time.perf_counter() - t0
print("identical:", [a == b for a, b in zip(single, out)])
for a, b in zip(single, out):
    if a != b:
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y); print("  first diff at", i)
print(f"one at a time (whole requests): {t_single:.2f} s; batched: prefill {t_prefill:.2f} s + decode {t_decode:.2f} s")
