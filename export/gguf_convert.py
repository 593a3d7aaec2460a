"""GEM's LLM (plain LLaMA-2 layout) -> GGUF with the `gguf` package, then quantization by llama.cpp.

Our own converter, small on purpose: tensor renaming, the rotary Q/K permutation (HF stores the two rotary
halves apart, llama.cpp expects them interleaved), hyperparameters, and the SentencePiece vocabulary with
scores and token types. Towers and projectors are not part of the GGUF: they become the ONNX encoders.
"""
from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from gem_runtime.errors import CheckpointError, LlmError
from gem_runtime.manifest import LLM_TYPES, QUANTIZED

LLM_TENSORS = {  # HF name (N = layer) -> GGUF name
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.N.self_attn.q_proj.weight": "blk.N.attn_q.weight",
    "model.layers.N.self_attn.k_proj.weight": "blk.N.attn_k.weight",
    "model.layers.N.self_attn.v_proj.weight": "blk.N.attn_v.weight",
    "model.layers.N.self_attn.o_proj.weight": "blk.N.attn_output.weight",
    "model.layers.N.mlp.gate_proj.weight": "blk.N.ffn_gate.weight",
    "model.layers.N.mlp.up_proj.weight": "blk.N.ffn_up.weight",
    "model.layers.N.mlp.down_proj.weight": "blk.N.ffn_down.weight",
    "model.layers.N.input_layernorm.weight": "blk.N.attn_norm.weight",
    "model.layers.N.post_attention_layernorm.weight": "blk.N.ffn_norm.weight",
}
_LAYER = re.compile(r"\.(\d+)\.")


def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name of an LLM tensor, or None for towers/projectors (not in the GGUF)."""
    m = _LAYER.search(hf_name)
    key = _LAYER.sub(".N.", hf_name, count=1) if m else hf_name
    target = LLM_TENSORS.get(key)
    if target is None:
        return None
    return target.replace("N", m.group(1), 1) if m else target


def permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotary layout (first half / second half of each head) -> llama.cpp's interleaved pairs."""
    out_dim = w.shape[0]
    return w.reshape(n_head, 2, out_dim // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def sentencepiece_vocab(tokenizer_model: Path):
    """(pieces, scores, token types, processor) as llama.cpp's converter writes a LLaMA SentencePiece vocabulary."""
    import sentencepiece as spm  # dependency of the export extra via transformers' tokenizers path

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i).encode())
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)           # UNKNOWN
        elif sp.is_control(i):
            types.append(3)           # CONTROL
        elif sp.is_unused(i):
            types.append(5)           # UNUSED
        elif sp.is_byte(i):
            types.append(6)           # BYTE
        else:
            types.append(1)           # NORMAL
    return tokens, scores, types, sp


def add_llama_tokenizer(w, tokens, scores, types, sp) -> None:
    """The LLaMA SentencePiece vocabulary's keys (BOS added, EOS not), as llama.cpp reads them."""
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)


def write_gguf(tensors: Iterable[tuple[str, np.ndarray]], config, tokenizer_model: Path, out: Path,
               name: str = "gem-llm", n_layers: int | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Stream LLM tensors (HF names, any float dtype) into an f16 GGUF. `n_layers` < config's keeps only the
    first layers (for real-shape tests at reduced depth). 1-D tensors (norms) stay f32, as llama.cpp expects."""
    import gguf

    n_layers = config.num_hidden_layers if n_layers is None else n_layers
    tmp = Path(str(out) + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(name)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_rope_dimension_count(config.head_dim)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_freq_base(config.rope_theta)
    w.add_vocab_size(config.vocab_size)
    w.add_file_type(LLM_TYPES["f16"].llama_ftype)
    tokens, scores, types, sp = sentencepiece_vocab(tokenizer_model)
    if len(tokens) != config.vocab_size:
        raise CheckpointError(tokenizer_model, f"{len(tokens)} pieces, the model's vocabulary has {config.vocab_size}")
    add_llama_tokenizer(w, tokens, scores, types, sp)
    seen = set()
    for hf, t in tensors:
        name_ = gguf_name(hf)
        if name_ is None:
            continue
        m = _LAYER.search(hf)
        if m and int(m.group(1)) >= n_layers:
            continue
        a = np.asarray(t, dtype=np.float32)
        if hf.endswith("q_proj.weight"):
            a = permute_rotary(a, config.num_attention_heads)
        elif hf.endswith("k_proj.weight"):
            a = permute_rotary(a, config.num_key_value_heads)
        a = a.astype(np.float16) if a.ndim == 2 else a
        w.add_tensor(name_, a)
        seen.add(name_)
        if progress:
            progress(name_)
    expected = 3 + 9 * n_layers
    if len(seen) != expected:
        raise ValueError(f"GGUF would hold {len(seen)} tensors, a {n_layers}-layer LLaMA needs {expected}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def quantize(src: Path, dst: Path, qtype: str, threads: int = 2) -> Path:
    """llama.cpp's own quantizer (llama_model_quantize), e.g. q8_0 or q4_k_m."""
    import llama_cpp as L

    if qtype not in QUANTIZED:
        raise ValueError(f"unknown quantization {qtype!r}; choose from {', '.join(QUANTIZED)}")   # callers check
    qp = L.llama_model_quantize_default_params()
    qp.ftype = LLM_TYPES[qtype].llama_ftype
    qp.nthread = threads
    tmp = Path(str(dst) + ".tmp")
    rc = L.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(qp))
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise LlmError(f"{src}: llama_model_quantize to {qtype} failed with code {rc}")
    tmp.replace(dst)
    return dst
