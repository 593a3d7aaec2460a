"""Checkpoints in the HF / GEM-7B layout: config.json, model.safetensors (or shards + index), tokenizer files.

One loader serves our checkpoints and a real GEM-7B download: it also takes an ECG-CoCa training checkpoint
(`module.ecg.*` keys, read with weights_only=True) when the tower is not in the safetensors, and a separate
CLIP folder when the vision tower is missing. Never unpickles anything else.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gem_runtime.errors import CheckpointError

from .config import GemConfig
from .model import GemForCausalLM

ECG_PREFIX = "model.ecg_tower.ecg_tower."
CLIP_PREFIX = "model.vision_tower.vision_tower."
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
IGNORED_SUFFIXES = ("position_ids",)          # buffers older HF versions saved
IGNORED_KEYS = ("model.image_newline",)       # inherited from PULSE, unused by GEM (flat merge)


def save_checkpoint(model: GemForCausalLM, out_dir: Path, tokenizer_dir: Path | None,
                    dtype: torch.dtype = torch.float16) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "model.safetensors.tmp"
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out_dir / "model.safetensors")              # never a half-written weights file
    (out_dir / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=2))
    if tokenizer_dir is not None and Path(tokenizer_dir).resolve() != out_dir.resolve():
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).exists():
                shutil.copy(Path(tokenizer_dir) / name, out_dir / name)
    return out_dir


def read_config(ckpt: Path) -> GemConfig:
    path = Path(ckpt) / "config.json"
    if not path.exists():
        raise CheckpointError(ckpt, "no config.json: not a GEM checkpoint folder")
    try:
        return GemConfig.from_hf_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(path, f"bad config: {e}") from None


def read_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or the shards named by model.safetensors.index.json."""
    ckpt = Path(ckpt)
    single, index = ckpt / "model.safetensors", ckpt / "model.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        files = [ckpt / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CheckpointError(index, f"shards missing: {', '.join(missing)}")
    else:
        raise CheckpointError(ckpt, "no model.safetensors or model.safetensors.index.json")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as e:  # safetensors raises its own types for truncated / corrupt headers
            raise CheckpointError(f, f"unreadable safetensors: {e}") from None
    return state


def read_ecg_coca(pt_file: Path) -> dict[str, torch.Tensor]:
    """ECG tower weights from an ECG-CoCa (open_clip) training checkpoint: keys `module.ecg.*`."""
    try:
        obj = torch.load(str(pt_file), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(pt_file, f"not a readable weights-only torch file: {str(e).splitlines()[0]}") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(pt_file, "no state_dict in ECG-CoCa checkpoint")
    tower = {ECG_PREFIX + k[len("module.ecg."):]: v for k, v in sd.items() if k.startswith("module.ecg.")}
    if not tower:
        raise CheckpointError(pt_file, "no keys starting with 'module.ecg.' (not an ECG-CoCa checkpoint)")
    return tower


def read_clip_folder(clip_dir: Path) -> dict[str, torch.Tensor]:
    """CLIP vision weights from an HF CLIPVisionModel / CLIPModel folder (keys `vision_model.*`)."""
    state = read_state_dict(clip_dir)
    vision = {CLIP_PREFIX + k: v for k, v in state.items() if k.startswith("vision_model.")}
    if not vision:
        raise CheckpointError(clip_dir, "no vision_model.* tensors")
    return vision


def load_checkpoint(ckpt: Path, *, dtype: torch.dtype = torch.float32, ecg_tower_pt: Path | None = None,
                    clip_dir: Path | None = None) -> GemForCausalLM:
    """Build the model from config.json and load every tensor, checking names and shapes strictly."""
    ckpt = Path(ckpt)
    config = read_config(ckpt)
    state = read_state_dict(ckpt)
    if not any(k.startswith(ECG_PREFIX) for k in state):
        pt = ecg_tower_pt or _config_path(ckpt, "mm_ecg_tower")
        if pt is None or not Path(pt).exists():
            raise CheckpointError(ckpt, f"no ECG tower tensors ({ECG_PREFIX}*) and no ECG-CoCa .pt "
                                        f"(looked for {pt}); pass the cpt_wfep_epoch_20.pt file")
        state.update(read_ecg_coca(Path(pt)))
    if not any(k.startswith(CLIP_PREFIX) for k in state):
        if clip_dir is None:
            raise CheckpointError(ckpt, f"no CLIP tensors ({CLIP_PREFIX}vision_model.*); pass the folder of "
                                        f"{config.mm_vision_tower} weights")
        state.update(read_clip_folder(Path(clip_dir)))
    state = {k: v for k, v in state.items()
             if not k.endswith(IGNORED_SUFFIXES) and k not in IGNORED_KEYS}
    with torch.device("meta"):
        model = GemForCausalLM(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches (e.g. {'; '.join(bad_shape[:3])})")
    if problems:
        raise CheckpointError(ckpt, "; ".join(problems))
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True, strict=True)
    return model.eval()


def _config_path(ckpt: Path, key: str) -> Path | None:
    value = json.loads((ckpt / "config.json").read_text()).get(key)
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else ckpt / p
