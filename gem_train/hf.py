"""The transformers models our GEM model equals: LlamaForCausalLM for the LLM, CLIPVisionModel for the tower.

GEM's own code runs these classes; tests/test_model.py checks ours against them and the benchmark's reference
(benchmarks/hf_reference.py) runs them. The mapping from our config and tensor names is written here once.
"""
from __future__ import annotations

from .config import GemConfig

CLIP_PREFIX = "model.vision_tower.vision_tower.vision_model."


def llama_config(c: GemConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta,
        max_position_embeddings=c.max_position_embeddings, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2, pad_token_id=0)


def clip_vision_config(c: GemConfig):
    """The whole tower (all layers): GEM runs every layer and then selects hidden_states[-2]."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=c.vision_hidden_size, intermediate_size=c.vision_intermediate_size,
        num_hidden_layers=c.vision_layers, num_attention_heads=c.vision_heads, image_size=c.vision_image_size,
        patch_size=c.vision_patch_size, hidden_act="quick_gelu")


def llama_state(state: dict) -> dict:
    """Our state dict -> LlamaForCausalLM's (the LLM tensors already carry its names)."""
    return {k: v for k, v in state.items() if "tower" not in k and "projector" not in k}


def clip_state(state: dict, clip) -> dict:
    """Our state dict -> `clip`'s (a CLIPVisionModel). transformers 5 names its tensors without the
    `vision_model.` level that checkpoints written by older versions (GEM-7B's) carry; ours follow the checkpoint."""
    vis = {k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    if any(k.startswith("vision_model.") for k in clip.state_dict()):
        vis = {"vision_model." + k: v for k, v in vis.items()}
    return vis
