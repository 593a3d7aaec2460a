"""Decode roofline of a GGUF on this machine: measured tok/s vs memory bandwidth / bytes read per token.

A decode step reads every layer weight and the output matrix once; `token_embd` is a row lookup (one row per
token), so it is not counted, unless the model ties its output to it (no `output.weight`), where it is the
output matrix. Bandwidth is measured in the same command (benchmarks.machine.measure_bandwidth). When the
weights fit in the last-level cache there is no DRAM bound to compare with, and the report says so.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .machine import llc_bytes as read_llc_bytes
from .machine import machine_info, measure_bandwidth

EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"


def decode_bytes(gguf_path: Path) -> dict:
    """Bytes a decode step reads: all tensors but the embedding table (see module docstring)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    tied = OUTPUT not in sizes
    read = {k: v for k, v in sizes.items() if k != EMBEDDING or tied}
    types = sorted({t.tensor_type.name for t in reader.tensors})
    return {"bytes_per_token": sum(read.values()), "file_bytes": Path(gguf_path).stat().st_size,
            "tensors": len(sizes), "tensors_read": len(read), "embedding_bytes": sizes.get(EMBEDDING, 0),
            "tied_output": tied, "tensor_types": types}


def filler_ids(n_vocab: int, n: int) -> list[int]:
    """n token ids for timing a bare GGUF: BOS, then ids spread over the vocabulary past the special ones."""
    return [1] + [3 + (i * 7) % (n_vocab - 3) for i in range(n - 1)]


def measure_decode(gguf_path: Path, threads: int, new_tokens: int = 32, prompt_tokens: int = 64,
                   reps: int = 3) -> dict:
    """Greedy decode speed after a short prompt of token ids (EOS ignored), median and best of `reps`."""
    from gem_runtime.llm import LlamaLLM, LlmTimings

    llm = LlamaLLM(Path(gguf_path), n_ctx=prompt_tokens + new_tokens + 8, n_batch=512, n_threads=threads)
    try:
        ids = filler_ids(llm.n_vocab, prompt_tokens)
        rates, prefill_ms = [], []
        for _ in range(reps):
            t = LlmTimings()
            pos = llm.prefill(ids[:-1], np.zeros((0, llm.n_embd), np.float32), ids[-1:], t)
            prefill_ms.append(t.prefill_ms)
            llm.generate(pos, new_tokens, t, ignore_eos=True)
            rates.append(t.decode_tok_s)
    finally:
        llm.close()
    return {"tok_s_median": float(np.median(rates)), "tok_s_best": float(max(rates)), "tok_s_runs": rates,
            "new_tokens": new_tokens, "prompt_tokens": prompt_tokens, "threads": threads,
            "first_prefill_ms": prefill_ms[0]}


def roofline(gguf_path: Path, threads: int = 2, *, new_tokens: int = 32, reps: int = 3, bw_mib: int | None = None,
             bw_repeats: int = 5, llc: int | None = None) -> dict:
    """The whole report. `llc` overrides the last-level cache size read from /sys (bytes)."""
    llc = read_llc_bytes() if llc is None else llc
    if bw_mib is None:                      # well past the LLC, or the cache is what gets measured
        bw_mib = max(1024, 4 * (llc or 0) // 2**20)
    model = decode_bytes(gguf_path)
    decode = measure_decode(gguf_path, threads, new_tokens, reps=reps)
    bw = measure_bandwidth(threads, bw_mib, bw_repeats)
    per_tok = model["bytes_per_token"]
    out = {"gguf": str(gguf_path), "machine": machine_info(), "model": model, "decode": decode, "bandwidth": bw,
           "llc_bytes": llc, "threads": threads}
    if llc is not None and per_tok <= llc:
        out.update(bound_tok_s=None, percent_of_bound=None, fits_in_cache=True,
                   verdict=f"no DRAM bound: the {per_tok / 2**20:.1f} MiB read per token fit in the "
                           f"{llc / 2**20:.0f} MiB last-level cache")
        return out
    bound = bw["read_gb_s"] * 1e9 / per_tok
    pct = 100 * decode["tok_s_median"] / bound
    out.update(bound_tok_s=bound, bound_copy_tok_s=bw["copy_gb_s"] * 1e9 / per_tok, percent_of_bound=pct,
               fits_in_cache=False, effective_gb_s=decode["tok_s_median"] * per_tok / 1e9,
               verdict=f"decode {decode['tok_s_median']:.2f} tok/s = {pct:.0f}% of the read-bandwidth bound "
                       f"{bound:.2f} tok/s ({bw['read_gb_s']:.1f} GB/s / {per_tok / 1e9:.3f} GB per token)")
    return out


def markdown(r: dict) -> str:
    from .machine import machine_line

    m, d, bw = r["model"], r["decode"], r["bandwidth"]
    lines = [f"### Roofline: {Path(r['gguf']).name}", "",
             f"- machine: {machine_line(r['machine'])}",
             f"- GGUF: {m['file_bytes'] / 1e9:.3f} GB file, {m['tensors']} tensors ({', '.join(m['tensor_types'])}); "
             f"bytes read per decoded token: **{m['bytes_per_token'] / 1e9:.3f} GB** ({m['tensors_read']} tensors: "
             f"all layer weights + output; token_embd {'counted, it is tied to the output' if m['tied_output'] else 'excluded, it is a row lookup'})",
             f"- bandwidth, {bw['threads']} threads, {bw['array_mib']} MiB arrays, best of {bw['repeats']}: "
             f"read **{bw['read_gb_s']:.1f} GB/s**, copy {bw['copy_gb_s']:.1f} GB/s (read + write)",
             f"- decode, {d['threads']} threads, {d['new_tokens']} tokens after {d['prompt_tokens']} prompt ids: "
             f"median **{d['tok_s_median']:.2f} tok/s** (best {d['tok_s_best']:.2f}, runs "
             f"{', '.join(f'{x:.2f}' for x in d['tok_s_runs'])})",
             f"- last-level cache: {r['llc_bytes'] / 2**20:.0f} MiB" if r["llc_bytes"] else "- last-level cache: unknown"]
    if not r["fits_in_cache"]:
        lines += [f"- bound = read bandwidth / bytes per token = **{r['bound_tok_s']:.2f} tok/s** "
                  f"(copy-bandwidth bound {r['bound_copy_tok_s']:.2f}); effective bandwidth of decode "
                  f"{r['effective_gb_s']:.1f} GB/s"]
    lines += ["", f"**{r['verdict']}**"]
    return "\n".join(lines) + "\n"


# --- a gem-7b-shaped random GGUF, without building the torch model -----------------------------------------

def random_llm_tensors(config, layers: int, seed: int = 0, std: float = 0.02):
    """(HF name, float16 array) of a random LLaMA LLM, one tensor at a time (norms are ones)."""
    rng = np.random.default_rng(seed)
    H, I, V = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * config.head_dim

    def w(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float16)

    yield "model.embed_tokens.weight", w(V, H)
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", np.ones(H, np.float32)
        yield p + "self_attn.q_proj.weight", w(H, H)
        yield p + "self_attn.k_proj.weight", w(kv, H)
        yield p + "self_attn.v_proj.weight", w(kv, H)
        yield p + "self_attn.o_proj.weight", w(H, H)
        yield p + "post_attention_layernorm.weight", np.ones(H, np.float32)
        yield p + "mlp.gate_proj.weight", w(I, H)
        yield p + "mlp.up_proj.weight", w(I, H)
        yield p + "mlp.down_proj.weight", w(H, I)
    yield "model.norm.weight", np.ones(H, np.float32)
    yield "lm_head.weight", w(V, H)


def make_random_gguf(config, tokenizer_model: Path, out: Path, quant: str = "q4_k_m", threads: int = 2,
                     keep_f16: bool = False, log=print) -> Path:
    """Random f16 GGUF of `config` streamed tensor by tensor, then llama.cpp's quantizer to `quant`."""
    from gem_export.gguf_convert import quantize, write_gguf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    f16 = out.with_name(out.stem + "-f16.gguf")
    t0 = time.time()
    write_gguf(random_llm_tensors(config, config.num_hidden_layers), config, tokenizer_model, f16,
               name=f"{config.name}-random")
    log(f"[roofline] {f16.name}: {f16.stat().st_size / 1e9:.2f} GB in {time.time() - t0:.0f} s")
    if quant == "f16":
        return f16.replace(out)
    t0 = time.time()
    quantize(f16, out, quant, threads)
    log(f"[roofline] {out.name} ({quant}): {out.stat().st_size / 1e9:.2f} GB in {time.time() - t0:.0f} s")
    if not keep_f16:
        f16.unlink()
    return out
