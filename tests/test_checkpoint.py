"""One loader for our checkpoints and the GEM-7B download layout."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from gem_runtime.errors import CheckpointError
from gem_train.checkpoint import CLIP_PREFIX, load_checkpoint, save_checkpoint
from gem_train.config import GemConfig
from gem_train.model import GemForCausalLM


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_of_our_layout(tmp_path):
    torch.manual_seed(0)
    m = GemForCausalLM(GemConfig.from_name("tiny"))
    save_checkpoint(m, tmp_path, None, dtype=torch.float32)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for key in ("mm_ecg_tower", "mm_vision_tower", "mm_projector_type", "ecg_projector_type", "mm_hidden_size",
                "mm_vision_select_layer", "mm_vision_select_feature", "image_aspect_ratio"):
        assert key in cfg, key
    assert cfg["architectures"] == ["LlavaLlamaForCausalLM"]
    assert _same_weights(m, load_checkpoint(tmp_path))


def test_gem7b_layout_sharded_and_separate_ecg_coca(tiny_gem7b_layout, tiny_checkpoint):
    a = load_checkpoint(tiny_gem7b_layout)
    b = load_checkpoint(tiny_checkpoint)
    assert _same_weights(a, b)
    assert not any(k.startswith("model.ecg_tower") for k in
                   json.loads((tiny_gem7b_layout / "model.safetensors.index.json").read_text())["weight_map"])


def test_missing_clip_is_named(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}, str(tmp_path / "model.safetensors"))
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="no CLIP tensors"):
        load_checkpoint(tmp_path)
    # ... and a separate CLIP folder (HF CLIPVisionModel names) completes it
    clip = tmp_path / "clip"
    clip.mkdir()
    save_file({k[len(CLIP_PREFIX):]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)},
              str(clip / "model.safetensors"))
    assert _same_weights(load_checkpoint(tmp_path, clip_dir=clip), load_checkpoint(tiny_checkpoint))


def test_missing_and_misshapen_tensors_are_listed(tiny_checkpoint, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    state.pop("model.layers.1.mlp.up_proj.weight")
    state["model.mm_projector.2.bias"] = torch.zeros(3)
    save_file(state, str(tmp_path / "model.safetensors"))
    shutil.copy(tiny_checkpoint / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    msg = str(e.value)
    assert "model.layers.1.mlp.up_proj.weight" in msg and "mm_projector.2.bias (3,)" in msg and "\n" not in msg


def test_pickled_code_in_ecg_coca_pt_is_refused(tiny_gem7b_layout, tmp_path):
    for f in tiny_gem7b_layout.iterdir():
        shutil.copy(f, tmp_path / f.name)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {"module.ecg.conv1.weight": Evil()}}, tmp_path / "cpt_wfep_epoch_20.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path)


def test_real_gem7b_config_names_its_towers():
    """A GEM-7B config.json has no tower dims: they come from mm_vision_tower / open_clip_config."""
    cfg = GemConfig.from_name("gem-7b").to_hf_dict()
    cfg.pop("gem_edge")
    c = GemConfig.from_hf_dict(cfg)
    assert (c.vision_hidden_size, c.vision_layers, c.vision_image_size, c.ecg_width, c.ecg_layers) == \
        (1024, 24, 336, 768, 12)
    assert (c.ecg_tokens, c.image_tokens) == (101, 576)
    with pytest.raises(ValueError, match="unknown mm_vision_tower"):
        GemConfig.from_hf_dict({**cfg, "mm_vision_tower": "google/siglip-so400m"})
