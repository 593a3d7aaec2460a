"""Random-weight models in the layouts llama.cpp's own converters write, for `gem-bench peer` (issue 28).

- The LLM: a LLaVA-1.5-7B language model (Vicuna-7B v1.5 = LLaMA-2-7B: 4096 wide, SwiGLU 11008, 32 heads, MHA,
  vocab 32000) at N layers, as `convert_hf_to_gguf.py` writes LLaMA (`token_embd`, `blk.N.attn_q`, ...,
  `output_norm`, `output`; norms f32, matrices f16), with a SentencePiece vocabulary and a Vicuna chat template
  (llama.cpp's template detection reads it as `vicuna`, the template its mtmd CLI tells LLaVA-1.5 users to use).
- The `mmproj`: CLIP ViT-L/14-336 + LLaVA-1.5's 2-layer MLP projector as
  `tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py --llava-projector` writes it: arch `clip`, `clip.*`
  keys, the last encoder layer dropped (block_count 23: LLaVA takes layer -2's output), no post-LN, `mm.0`/`mm.2`,
  fc1/fc2 named `ffn_down`/`ffn_up` (the converter's historic swap, which clip.cpp swaps back), QuickGELU
  (`clip.use_gelu` false). f16 as that script writes it; q8_0 by the type rule of `convert_hf_to_gguf.py
  --outtype q8_0` (2-D `.weight` matrices Q8_0, patch and position embeddings, biases and norms kept float).

Every tensor is written as it is generated (header, tensor infos, then data), so a 32-layer 13 GB file needs no
more memory than its largest tensor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP's image normalization (gem-spec.md section 3)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VICUNA_TEMPLATE = (            # detected by llama.cpp (llm_chat_detect_template) as "vicuna": "USER: " + "ASSISTANT: "
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + '\\n' }}"
    "{% else %}{{ 'ASSISTANT: ' + message['content'] + '</s>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
MMPROJ_TYPES = ("f16", "q8_0")


@dataclass(frozen=True)
class LlmShape:
    """LLaMA-2-7B / Vicuna-7B v1.5 (LLaVA-1.5-7B's language model) unless overridden."""
    hidden: int = 4096            # embedding width
    ff: int = 11008               # SwiGLU inner width
    heads: int = 32
    kv_heads: int = 32            # MHA, no GQA
    vocab: int = 32000
    context: int = 4096
    eps: float = 1e-5             # RMSNorm
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class ClipShape:
    """openai/clip-vit-large-patch14-336 (LLaVA-1.5's and GEM's image tower) unless overridden."""
    width: int = 1024
    ff: int = 4096
    heads: int = 16
    layers: int = 24              # the checkpoint's; the mmproj keeps layers - 1 (LLaVA's select layer -2)
    image: int = 336
    patch: int = 14
    projection_dim: int = 768     # CLIP's own text-image projection width (written, unused by LLaVA)
    eps: float = 1e-5

    @property
    def positions(self) -> int:   # patches + CLS
        return (self.image // self.patch) ** 2 + 1


# (GGUF name, numpy shape (rows, cols) as the writer takes it, kind): kind "w" a random matrix, "b" a random
# bias, "one" a norm weight, "zero" a norm bias
Spec = tuple[str, tuple[int, ...], str]


def llm_specs(s: LlmShape, layers: int) -> list[Spec]:
    specs: list[Spec] = [("token_embd.weight", (s.vocab, s.hidden), "w")]
    kv = s.hidden // s.heads * s.kv_heads
    for i in range(layers):
        p = f"blk.{i}."
        specs += [(p + "attn_norm.weight", (s.hidden,), "one"), (p + "attn_q.weight", (s.hidden, s.hidden), "w"),
                  (p + "attn_k.weight", (kv, s.hidden), "w"), (p + "attn_v.weight", (kv, s.hidden), "w"),
                  (p + "attn_output.weight", (s.hidden, s.hidden), "w"), (p + "ffn_norm.weight", (s.hidden,), "one"),
                  (p + "ffn_gate.weight", (s.ff, s.hidden), "w"), (p + "ffn_up.weight", (s.ff, s.hidden), "w"),
                  (p + "ffn_down.weight", (s.hidden, s.ff), "w")]
    return specs + [("output_norm.weight", (s.hidden,), "one"), ("output.weight", (s.vocab, s.hidden), "w")]


def clip_specs(c: ClipShape, llm_width: int) -> list[Spec]:
    """The legacy converter's tensors for LLaVA-1.5: projector first, then the vision model minus its last layer
    and post-LN. fc1 (width -> ff) is named ffn_down and fc2 ffn_up, as that script names them."""
    w = c.width
    specs: list[Spec] = [("mm.0.weight", (llm_width, w), "w"), ("mm.0.bias", (llm_width,), "b"),
                         ("mm.2.weight", (llm_width, llm_width), "w"), ("mm.2.bias", (llm_width,), "b"),
                         ("v.class_embd", (w,), "b"), ("v.patch_embd.weight", (w, 3, c.patch, c.patch), "w"),
                         ("v.position_embd.weight", (c.positions, w), "w"),
                         ("v.pre_ln.weight", (w,), "one"), ("v.pre_ln.bias", (w,), "zero")]
    for i in range(c.layers - 1):
        p = f"v.blk.{i}."
        for proj in ("attn_k", "attn_v", "attn_q", "attn_out"):
            specs += [(p + proj + ".weight", (w, w), "w"), (p + proj + ".bias", (w,), "b")]
        specs += [(p + "ln1.weight", (w,), "one"), (p + "ln1.bias", (w,), "zero"),
                  (p + "ffn_down.weight", (c.ff, w), "w"), (p + "ffn_down.bias", (c.ff,), "b"),
                  (p + "ffn_up.weight", (w, c.ff), "w"), (p + "ffn_up.bias", (w,), "b"),
                  (p + "ln2.weight", (w,), "one"), (p + "ln2.bias", (w,), "zero")]
    return specs


def llm_type(name: str, shape: tuple[int, ...]) -> str:
    return "f16" if len(shape) >= 2 else "f32"


def mmproj_type(name: str, shape: tuple[int, ...], ftype: str) -> str:
    """f16: the legacy script (4-D and 2-D `.weight` f16, the rest f32). q8_0: convert_hf_to_gguf's rule
    (1-D, non-`.weight` and position embeddings f32, the patch embedding forced float, other matrices Q8_0)."""
    matrix = name.endswith(".weight") and len(shape) >= 2
    if ftype == "f16":
        return "f16" if matrix else "f32"
    if not matrix or "position_embd" in name or "patch_embd" in name:
        return "f32"
    return "q8_0"


def write_llm(out: Path, layers: int, tokenizer_model: Path, shape: LlmShape = LlmShape(), seed: int = 0,
              log: Callable[[str], None] = print) -> Path:
    """An N-layer LLaVA-1.5-7B-shaped f16 LLM GGUF with random weights (normal, std 0.02; norms 1)."""
    from gem_export.gguf_convert import add_llama_tokenizer, sentencepiece_vocab

    tokens, scores, types, sp = sentencepiece_vocab(tokenizer_model)
    if len(tokens) != shape.vocab:
        raise ValueError(f"{tokenizer_model}: {len(tokens)} pieces, the LLM's vocabulary has {shape.vocab}")

    def keys(w):
        w.add_name(f"llava-1.5-7b-shape-{layers}L-random")
        w.add_context_length(shape.context)
        w.add_embedding_length(shape.hidden)
        w.add_block_count(layers)
        w.add_feed_forward_length(shape.ff)
        w.add_rope_dimension_count(shape.hidden // shape.heads)
        w.add_head_count(shape.heads)
        w.add_head_count_kv(shape.kv_heads)
        w.add_layer_norm_rms_eps(shape.eps)
        w.add_rope_freq_base(shape.rope_theta)
        w.add_vocab_size(shape.vocab)
        w.add_file_type(1)                                 # LLAMA_FTYPE_MOSTLY_F16
        add_llama_tokenizer(w, tokens, scores, types, sp)
        w.add_chat_template(VICUNA_TEMPLATE)

    specs = [(n, sh, k, llm_type(n, sh)) for n, sh, k in llm_specs(shape, layers)]
    return _write(out, "llama", keys, specs, seed, log)


def write_mmproj(out: Path, ftype: str = "f16", clip: ClipShape = ClipShape(), llm_width: int = 4096,
                 seed: int = 1, log: Callable[[str], None] = print) -> Path:
    """A LLaVA-1.5 CLIP ViT-L/14-336 mmproj with random weights, f16 or q8_0."""
    if ftype not in MMPROJ_TYPES:
        raise ValueError(f"mmproj type {ftype!r}: choose from {', '.join(MMPROJ_TYPES)}")

    def keys(w):
        w.add_bool("clip.has_text_encoder", False)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_llava_projector", True)
        w.add_file_type({"f16": 1, "q8_0": 7}[ftype])
        w.add_name("clip-vit-large-patch14-336-random")
        w.add_description("image encoder for LLaVA")
        w.add_string("clip.projector_type", "mlp")
        w.add_uint32("clip.vision.image_size", clip.image)
        w.add_uint32("clip.vision.patch_size", clip.patch)
        w.add_uint32("clip.vision.embedding_length", clip.width)
        w.add_uint32("clip.vision.feed_forward_length", clip.ff)
        w.add_uint32("clip.vision.projection_dim", clip.projection_dim)
        w.add_uint32("clip.vision.attention.head_count", clip.heads)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", clip.eps)
        w.add_uint32("clip.vision.block_count", clip.layers - 1)
        w.add_array("clip.vision.image_mean", list(CLIP_MEAN))
        w.add_array("clip.vision.image_std", list(CLIP_STD))
        w.add_bool("clip.use_gelu", False)                # QuickGELU

    specs = [(n, sh, k, mmproj_type(n, sh, ftype)) for n, sh, k in clip_specs(clip, llm_width)]
    return _write(out, "clip", keys, specs, seed, log)


def _write(out: Path, arch: str, keys, specs: list[tuple[str, tuple, str, str]], seed: int, log) -> Path:
    import gguf

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    t0 = time.time()
    w = gguf.GGUFWriter(str(tmp), arch)
    keys(w)
    for name, shape, _, kind in specs:
        if kind == "q8_0":
            q = gguf.GGMLQuantizationType.Q8_0
            byte_shape = gguf.quant_shape_to_byte_shape(shape, q)
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=q)
        else:
            dt = np.dtype(np.float16 if kind == "f16" else np.float32)
            w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for data in _tensors(specs, seed):
        w.write_tensor_data(data)
    w.close()
    tmp.replace(out)
    log(f"[peer] {out.name}: {len(specs)} tensors, {out.stat().st_size / 1e9:.2f} GB in {time.time() - t0:.0f} s")
    return out


def _tensors(specs, seed: int) -> Iterator[np.ndarray]:
    import gguf

    rng = np.random.default_rng(seed)
    for _, shape, kind, ttype in specs:
        if kind == "one":
            a = np.ones(shape, np.float32)
        elif kind == "zero":
            a = np.zeros(shape, np.float32)
        else:
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= 0.02
        if ttype == "q8_0":
            yield gguf.quants.quantize(a, gguf.GGMLQuantizationType.Q8_0)
        else:
            yield a.astype(np.float16 if ttype == "f16" else np.float32, copy=False)


def read_back(path: Path) -> tuple[dict, dict]:
    """(metadata key -> value, tensor name -> (shape in ggml order, type name)) as gguf-py reads the file."""
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            continue
        meta[k] = f.contents()
    tensors = {t.name: (tuple(int(x) for x in t.shape), t.tensor_type.name) for t in r.tensors}
    return meta, tensors
