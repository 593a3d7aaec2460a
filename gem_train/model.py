"""GEM in one file: ECG-CoCa tower + CLIP tower + projectors + LLaMA, with GEM-7B's tensor names.

Module names mirror the published checkpoint (`model.ecg_tower.ecg_tower.*`,
`model.vision_tower.vision_tower.vision_model.*`, `model.ecg_projector.*`, `model.mm_projector.{0,2}.*`,
`model.layers.N.*`, `lm_head.weight`), so our small checkpoints and a real GEM-7B load through one path.
The LLaMA here is written out (no transformers model class) and tested against transformers' LlamaForCausalLM.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gem_runtime.constants import IGNORE_INDEX
from gem_runtime.prompt import split_prompt

from .config import GemConfig


# ----------------------------------------------------------------------------------------------- LLaMA
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype):
    """HF LLaMA rotary layout (halves, not interleaved): the GGUF converter permutes Q/K to llama.cpp's."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]         # (T, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)                        # (T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, c: GemConfig):
        super().__init__()
        self.n_head, self.n_kv, self.hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, self.n_head * self.hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.hd, c.hidden_size, bias=False)

    def forward(self, x, cos, sin, cache=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)    # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:                       # cache: dict with "k", "v" of earlier positions
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if self.n_kv != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_head // self.n_kv, dim=1)
        # Causal over the new rows; with a cache the new rows see every earlier position.
        if T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        elif k.shape[2] == T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            past = k.shape[2] - T
            mask = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class LlamaMLP(nn.Module):
    def __init__(self, c: GemConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c: GemConfig):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# ------------------------------------------------------------------------------------- ECG-CoCa tower
def full_attention(q, k, v):
    """Unmasked softmax attention, written out (MatMul/Softmax in ONNX, no fused op TensorRT might lack).
    (B, h, T, hd) each -> (B, T, h * hd)."""
    B, h, T, hd = q.shape
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
    return (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, h * hd)


class EcgResidualBlock(nn.Module):
    """open_clip ResidualAttentionBlock: pre-LN, packed qkv (nn.MultiheadAttention names), erf-GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.Module()
        self.attn.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))  # q, k, v stacked
        self.attn.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.attn.out_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))
        nn.init.xavier_uniform_(self.attn.in_proj_weight)

    def forward(self, x):                                           # (B, T, W)
        B, T, W = x.shape
        qkv = F.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(B, T, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, T, hd) each
        x = x + self.attn.out_proj(full_attention(q, k, v))
        return x + self.mlp(self.ln_2(x))


class EcgTransformer(nn.Module):
    """ECG-CoCa's EcgTransformer. GEM's feature: last block output, CLS kept, before ln_post (proj unused)."""

    def __init__(self, c: GemConfig):
        super().__init__()
        w = c.ecg_width
        scale = w ** -0.5
        self.conv1 = nn.Conv1d(c.ecg_leads, w, kernel_size=c.ecg_patch_size, stride=c.ecg_patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(c.ecg_tokens, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            EcgResidualBlock(w, c.ecg_heads, int(w * c.ecg_mlp_ratio)) for _ in range(c.ecg_layers))
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, c.ecg_output_dim))

    def forward(self, ecg):                                         # (B, 12, 5000) mV
        x = self.conv1(ecg).transpose(1, 2)                         # (B, 100, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 101, W)
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            x = block(x)
        return x                                                    # (B, 101, W)


# ----------------------------------------------------------------------------------------- CLIP tower
class ClipEncoderLayer(nn.Module):
    def __init__(self, c: GemConfig):
        super().__init__()
        d = c.vision_hidden_size
        self.heads = c.vision_heads
        self.self_attn = nn.Module()
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            self.self_attn.add_module(name, nn.Linear(d, d))
        self.layer_norm1 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, c.vision_intermediate_size)
        self.mlp.fc2 = nn.Linear(c.vision_intermediate_size, d)
        self.layer_norm2 = nn.LayerNorm(d)

    def forward(self, x):                                           # (B, T, D)
        B, T, D = x.shape
        a, h = self.self_attn, self.heads
        y = self.layer_norm1(x)
        q, k, v = (p(y).view(B, T, h, D // h).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
        x = x + a.out_proj(full_attention(q, k, v))
        y = self.mlp.fc1(self.layer_norm2(x))
        y = y * torch.sigmoid(1.702 * y)                            # QuickGELU
        return x + self.mlp.fc2(y)


class ClipVisionTransformer(nn.Module):
    """HF CLIPVisionModel's `vision_model`, run only up to the selected layer (GEM's feature)."""

    def __init__(self, c: GemConfig):
        super().__init__()
        d = c.vision_hidden_size
        self.select_layers = c.vision_layers_used
        self.embeddings = nn.Module()
        self.embeddings.class_embedding = nn.Parameter(torch.randn(d) * d ** -0.5)
        self.embeddings.patch_embedding = nn.Conv2d(3, d, c.vision_patch_size, c.vision_patch_size, bias=False)
        self.embeddings.position_embedding = nn.Embedding(c.image_tokens + 1, d)
        self.pre_layrnorm = nn.LayerNorm(d)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(ClipEncoderLayer(c) for _ in range(c.vision_layers))
        self.post_layernorm = nn.LayerNorm(d)                      # stored in checkpoints, unused by GEM

    def forward(self, pixels):                                      # (B, 3, S, S)
        x = self.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.embeddings.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.embeddings.position_embedding.weight.to(x.dtype)
        x = self.pre_layrnorm(x)
        for layer in self.encoder.layers[: self.select_layers]:
            x = layer(x)
        return x[:, 1:]                                             # (B, N, D): patch tokens only


# ------------------------------------------------------------------------------------------ GEM model
def _wrap(attr: str, module: nn.Module) -> nn.Module:
    """LLaVA nests towers one level (`ecg_tower.ecg_tower`, `vision_tower.vision_tower`): keep the names."""
    holder = nn.Module()
    holder.add_module(attr, module)
    return holder


class GemModel(nn.Module):
    def __init__(self, c: GemConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.ecg_tower = _wrap("ecg_tower", EcgTransformer(c))
        clip = nn.Module()
        clip.vision_model = ClipVisionTransformer(c)
        self.vision_tower = _wrap("vision_tower", clip)
        self.ecg_projector = nn.Linear(c.ecg_width, c.mm_hidden_size)
        self.mm_projector = nn.Sequential(nn.Linear(c.mm_hidden_size, c.hidden_size), nn.GELU(),
                                          nn.Linear(c.hidden_size, c.hidden_size))


class GemForCausalLM(nn.Module):
    def __init__(self, config: GemConfig):
        super().__init__()
        self.config = config
        self.model = GemModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # --- encoders (what the ONNX graphs contain) ---
    def encode_ecgs(self, ecg):                                     # (B, 12, 5000) -> (B, 101, H)
        feats = self.model.ecg_tower.ecg_tower(ecg)
        return self.model.mm_projector(self.model.ecg_projector(feats))

    def encode_images(self, pixels):                                # (B, 3, S, S) -> (B, N, H)
        return self.model.mm_projector(self.model.vision_tower.vision_tower.vision_model(pixels))

    # --- LLM ---
    def llm(self, embeds, positions=None, caches=None):
        """(B, T, H) input rows -> (B, T, V) logits. `caches`: one dict per layer for incremental decoding."""
        B, T, _ = embeds.shape
        if positions is None:
            past = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
            positions = torch.arange(past, past + T, device=embeds.device)
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta, embeds.dtype)
        x = embeds
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i])
        return self.lm_head(self.model.norm(x))

    def splice(self, ids: list[int], mm_rows: torch.Tensor, labels: list[int] | None = None):
        """Replace the one sentinel (-200) in `ids` by the (ECG + image) rows, as GEM's
        prepare_inputs_labels_for_multimodal does. Returns (T, H) embeddings and (T,) labels."""
        before, after = split_prompt(ids)
        s = len(before)
        emb = self.model.embed_tokens
        dev = mm_rows.device
        pre = emb(torch.tensor(before, dtype=torch.long, device=dev))
        post = emb(torch.tensor(after, dtype=torch.long, device=dev))
        embeds = torch.cat([pre, mm_rows.to(pre.dtype), post], dim=0)
        if labels is None:
            return embeds, None
        lab = labels[:s] + [IGNORE_INDEX] * mm_rows.shape[0] + labels[s + 1:]
        return embeds, torch.tensor(lab, dtype=torch.long, device=dev)

    def multimodal_rows(self, ecg, pixels):                         # -> (B, 101 + N, H): ECG rows first
        return torch.cat([self.encode_ecgs(ecg), self.encode_images(pixels)], dim=1)

    def forward(self, input_ids: list[list[int]], labels: list[list[int]], ecgs, images):
        """Training step: mean next-token loss over assistant tokens only (labels != -100)."""
        rows = self.multimodal_rows(ecgs, images)
        pairs = [self.splice(i, r, l) for i, r, l in zip(input_ids, rows, labels)]
        T = max(e.shape[0] for e, _ in pairs)
        H = rows.shape[-1]
        embeds = rows.new_zeros(len(pairs), T, H)
        targets = torch.full((len(pairs), T), IGNORE_INDEX, dtype=torch.long, device=rows.device)
        for b, (e, lab) in enumerate(pairs):                        # right padding: causal attention never sees it
            embeds[b, : e.shape[0]] = e
            targets[b, : lab.shape[0]] = lab
        logits = self.llm(embeds)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                               targets[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)

    @torch.inference_mode()
    def generate(self, ids: list[int], ecg, pixels, max_new_tokens: int = 256, eos_id: int = 2,
                 ignore_eos: bool = False, on_prefill=None) -> list[int]:
        """Greedy decoding (GEM uses temperature 0) with a KV cache. ecg (12, 5000), pixels (3, S, S)."""
        rows = self.multimodal_rows(ecg[None], pixels[None])[0]
        embeds, _ = self.splice(ids, rows)
        caches = [dict() for _ in self.model.layers]
        logits = self.llm(embeds[None], caches=caches)[0, -1]
        if on_prefill is not None:
            on_prefill()
        out: list[int] = []
        for _ in range(max_new_tokens):
            tok = int(logits.argmax())
            if tok == eos_id and not ignore_eos:
                break
            out.append(tok)
            x = self.model.embed_tokens(torch.tensor([[tok]], device=embeds.device))
            logits = self.llm(x, caches=caches)[0, -1]
        return out


def count_parameters(model: GemForCausalLM) -> dict[str, int]:
    """Parameters per part, as GEM-7B reports them: LLM, ECG tower, CLIP tower, projectors."""
    parts = {"llm": 0, "ecg_tower": 0, "vision_tower": 0, "projectors": 0}
    for name, p in model.named_parameters():
        if ".ecg_tower." in name:
            parts["ecg_tower"] += p.numel()
        elif ".vision_tower." in name:
            parts["vision_tower"] += p.numel()
        elif "_projector" in name:
            parts["projectors"] += p.numel()
        else:
            parts["llm"] += p.numel()
    return parts
