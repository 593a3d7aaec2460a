"""GEM model configuration: one dataclass, named presets, GEM's config.json keys.

No torch here: export and runtime read configs too. Presets are override dicts (as in nanoGPT/litgpt).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gem_runtime.constants import ECG_SAMPLES, LEADS
from gem_runtime.errors import ConfigError

# Names that appear in a real GEM-7B config.json and the dims they stand for.
CLIP_L14_336 = dict(vision_hidden_size=1024, vision_layers=24, vision_heads=16,
                    vision_intermediate_size=4096, vision_patch_size=14, vision_image_size=336)
ECG_COCA_B32 = dict(ecg_width=768, ecg_layers=12, ecg_heads=12, ecg_mlp_ratio=4.0, ecg_patch_size=50, ecg_output_dim=512)
KNOWN_VISION_TOWERS = {"openai/clip-vit-large-patch14-336": CLIP_L14_336}
KNOWN_ECG_TOWERS = {"coca_ViT-B-32": ECG_COCA_B32}


@dataclass
class GemConfig:
    # --- LLM (LLaMA-2 layout; Vicuna-7B v1.5 for GEM-7B) ---
    vocab_size: int = 32000
    hidden_size: int = 4096            # LLM width: every encoder row is projected to this
    intermediate_size: int = 11008     # SwiGLU width
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32      # = heads: LLaMA-2-7B has no GQA
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    # --- ECG tower (ECG-CoCa EcgTransformer) ---
    ecg_width: int = 768
    ecg_layers: int = 12
    ecg_heads: int = 12
    ecg_mlp_ratio: float = 4.0
    ecg_patch_size: int = 50           # conv stem kernel = stride: 5000 samples -> 100 patches (+ CLS = 101 rows)
    ecg_output_dim: int = 512          # CoCa `proj`: stored in the checkpoint, unused by GEM
    ecg_samples: int = ECG_SAMPLES
    ecg_leads: int = len(LEADS)
    # --- Vision tower (CLIP ViT, HF CLIPVisionModel layout) ---
    vision_hidden_size: int = 1024     # = mm_hidden_size: the width the shared mm_projector reads
    vision_layers: int = 24
    vision_heads: int = 16
    vision_intermediate_size: int = 4096
    vision_patch_size: int = 14
    vision_image_size: int = 336
    mm_vision_select_layer: int = -2   # hidden_states[-2]: output of layer 23 of 24, patch tokens only
    # --- Projectors ---
    ecg_projector_type: str = "linear"        # ecg_width -> mm_hidden_size
    mm_projector_type: str = "mlp2x_gelu"     # mm_hidden_size -> hidden_size, shared by ECG and image rows
    # --- Names recorded in config.json ---
    mm_vision_tower: str = "openai/clip-vit-large-patch14-336"
    open_clip_config: str = "coca_ViT-B-32"
    name: str = "gem-7b"

    def __post_init__(self):
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} not divisible by heads {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        if self.ecg_width % self.ecg_heads:
            problems.append(f"ecg_width {self.ecg_width} not divisible by ecg_heads {self.ecg_heads}")
        if self.ecg_samples % self.ecg_patch_size:
            problems.append(f"ecg_samples {self.ecg_samples} not divisible by ecg_patch_size {self.ecg_patch_size}")
        if self.vision_image_size % self.vision_patch_size:
            problems.append("vision_image_size must be a multiple of vision_patch_size")
        if not -self.vision_layers <= self.mm_vision_select_layer < 0:
            problems.append(f"mm_vision_select_layer {self.mm_vision_select_layer} outside [-{self.vision_layers}, -1]")
        if self.ecg_projector_type != "linear" or self.mm_projector_type != "mlp2x_gelu":
            problems.append(f"unsupported projectors {self.ecg_projector_type!r}/{self.mm_projector_type!r} "
                            "(GEM uses linear / mlp2x_gelu)")
        if problems:
            raise ConfigError(f"GemConfig {self.name!r}: " + "; ".join(problems))

    # Derived token layout
    @property
    def ecg_tokens(self) -> int:          # 101 for GEM-7B: 100 patches + CLS
        return self.ecg_samples // self.ecg_patch_size + 1

    @property
    def image_tokens(self) -> int:        # 576 for GEM-7B: 24 x 24 patches, CLS dropped
        return (self.vision_image_size // self.vision_patch_size) ** 2

    @property
    def mm_hidden_size(self) -> int:
        return self.vision_hidden_size

    @property
    def vision_layers_used(self) -> int:  # 23 for GEM-7B: layers after the selected one are never run
        return self.vision_layers + 1 + self.mm_vision_select_layer

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_name(cls, name: str, **overrides) -> "GemConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})

    # --- config.json (HF LLaVA/GEM keys) ---
    def to_hf_dict(self) -> dict:
        """The config.json GEM's training writes (LlamaConfig + LLaVA/GEM mm_* keys), plus our tower dims."""
        return {
            "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "hidden_act": "silu", "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings, "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float16",
            "mm_ecg_tower": "ecg_coca.pt", "open_clip_config": self.open_clip_config,
            "ecg_projector_type": self.ecg_projector_type, "use_mm_proj": True,
            "mm_vision_tower": self.mm_vision_tower, "mm_projector_type": self.mm_projector_type,
            "mm_hidden_size": self.mm_hidden_size, "mm_vision_select_layer": self.mm_vision_select_layer,
            "mm_vision_select_feature": "patch", "mm_patch_merge_type": "flat", "image_aspect_ratio": "ori",
            "tokenizer_padding_side": "right", "tokenizer_model_max_length": self.max_position_embeddings,
            "tune_mm_mlp_adapter": False, "freeze_mm_mlp_adapter": False,
            "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
            # Not in GEM's file: the tower dims, so small models need no name lookup.
            "gem_edge": {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                              if f.name.startswith(("ecg_", "vision_"))}},
        }

    @classmethod
    def from_hf_dict(cls, d: dict) -> "GemConfig":
        """Read our config.json or a real GEM-7B one (tower dims then come from the tower names)."""
        ours = dict(d.get("gem_edge") or {})
        name = ours.pop("name", "gem-7b")
        if not any(k.startswith("vision_") for k in ours):
            tower = d.get("mm_vision_tower", "")
            key = next((k for k in KNOWN_VISION_TOWERS if tower.endswith(k.split("/")[-1])), None)
            if key is None:
                raise ConfigError(f"unknown mm_vision_tower {tower!r}; known: {', '.join(KNOWN_VISION_TOWERS)}")
            ours.update(KNOWN_VISION_TOWERS[key])
        if not any(k.startswith("ecg_") and k != "ecg_projector_type" for k in ours):
            tower = d.get("open_clip_config", "coca_ViT-B-32")
            if tower not in KNOWN_ECG_TOWERS:
                raise ConfigError(f"unknown open_clip_config {tower!r}; known: {', '.join(KNOWN_ECG_TOWERS)}")
            ours.update(KNOWN_ECG_TOWERS[tower])
        mm_hidden = d.get("mm_hidden_size", ours.get("vision_hidden_size"))
        if mm_hidden != ours["vision_hidden_size"]:
            raise ConfigError(f"mm_hidden_size {mm_hidden} != vision tower width {ours['vision_hidden_size']}")
        keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                "mm_vision_select_layer", "ecg_projector_type", "mm_projector_type", "mm_vision_tower",
                "open_clip_config")
        llm = {k: d[k] for k in keys if k in d}
        llm.setdefault("num_key_value_heads", llm.get("num_attention_heads", 32))
        return cls(**{**llm, **ours, "name": name})


PRESETS: dict[str, dict] = {
    # Exactly GEM-7B (shared/gem-spec.md sections 2-5).
    "gem-7b": {},
    # Seconds to build: for tests.
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                 ecg_width=32, ecg_layers=2, ecg_heads=2, ecg_output_dim=16,
                 vision_hidden_size=32, vision_layers=3, vision_heads=2, vision_intermediate_size=64,
                 vision_patch_size=16, vision_image_size=64),
    # The committed demo model: trained on this machine in about an hour; K-quant friendly widths (multiples of 256).
    "demo": dict(vocab_size=1024, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                 ecg_width=192, ecg_layers=4, ecg_heads=4, ecg_output_dim=128,
                 vision_hidden_size=128, vision_layers=3, vision_heads=4, vision_intermediate_size=512,
                 vision_patch_size=28, vision_image_size=224),
}
