"""The GEM architecture: GEM-7B shapes and names, equivalence with transformers, loss falls on `tiny`."""
import torch
import pytest

from gem_runtime.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from gem_train import hf
from gem_train.config import GemConfig
from gem_train.model import GemForCausalLM, count_parameters


def test_gem7b_parameter_counts_and_shapes_on_meta():
    with torch.device("meta"):
        m = GemForCausalLM(GemConfig.from_name("gem-7b"))
    n = count_parameters(m)
    assert abs(n["llm"] / 1e9 - 6.74) < 0.01
    assert abs(n["ecg_tower"] / 1e6 - 86) < 1
    assert abs(n["vision_tower"] / 1e6 - 303.5) < 1
    assert abs(n["projectors"] / 1e6 - 21.8) < 0.2
    sd = m.state_dict()
    expect = {
        "model.embed_tokens.weight": (32000, 4096), "lm_head.weight": (32000, 4096),
        "model.layers.31.mlp.down_proj.weight": (4096, 11008), "model.norm.weight": (4096,),
        "model.ecg_tower.ecg_tower.conv1.weight": (768, 12, 50),
        "model.ecg_tower.ecg_tower.positional_embedding": (101, 768),
        "model.ecg_tower.ecg_tower.transformer.resblocks.11.attn.in_proj_weight": (2304, 768),
        "model.ecg_tower.ecg_tower.transformer.resblocks.0.mlp.c_fc.weight": (3072, 768),
        "model.ecg_tower.ecg_tower.proj": (768, 512),
        "model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight": (577, 1024),
        "model.vision_tower.vision_tower.vision_model.encoder.layers.23.mlp.fc1.weight": (4096, 1024),
        "model.vision_tower.vision_tower.vision_model.post_layernorm.weight": (1024,),
        "model.ecg_projector.weight": (1024, 768), "model.mm_projector.0.weight": (4096, 1024),
        "model.mm_projector.2.weight": (4096, 4096), "model.mm_projector.2.bias": (4096,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    c = m.config
    assert (c.ecg_tokens, c.image_tokens, c.vision_layers_used) == (101, 576, 23)


def test_llm_matches_transformers_llama():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    c = GemConfig.from_name("tiny")
    ours = GemForCausalLM(c).eval()
    ref = LlamaForCausalLM(hf.llama_config(c)).eval()
    sd = hf.llama_state(ours.state_dict())
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in k for k in missing)
    ids = torch.randint(3, c.vocab_size, (1, 40))
    with torch.no_grad():
        a = ours.llm(ours.model.embed_tokens(ids))
        b = ref(input_ids=ids).logits
        # incremental decoding with the KV cache gives the same logits as the full pass
        caches = [dict() for _ in ours.model.layers]
        ours.llm(ours.model.embed_tokens(ids[:, :30]), caches=caches)
        inc = ours.llm(ours.model.embed_tokens(ids[:, 30:]), caches=caches)
    assert (a - b).abs().max() < 1e-4
    assert (inc - a[:, 30:]).abs().max() < 1e-4


def test_clip_tower_matches_transformers_hidden_states():
    from transformers import CLIPVisionModel

    torch.manual_seed(0)
    c = GemConfig.from_name("tiny")
    ours = GemForCausalLM(c).eval()
    ref = CLIPVisionModel(hf.clip_vision_config(c)).eval()
    sd = hf.clip_state(ours.state_dict(), ref)
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing)
    x = torch.randn(2, 3, c.vision_image_size, c.vision_image_size)
    with torch.no_grad():
        want = ref(pixel_values=x, output_hidden_states=True).hidden_states[c.mm_vision_select_layer][:, 1:]
        got = ours.model.vision_tower.vision_tower.vision_model(x)
    assert got.shape == (2, c.image_tokens, c.vision_hidden_size)
    assert (got - want).abs().max() < 1e-4


def test_ecg_block_matches_torch_multihead_attention():
    """Our packed-qkv block reads nn.MultiheadAttention's weights exactly as open_clip does."""
    torch.manual_seed(0)
    c = GemConfig.from_name("tiny")
    block = GemForCausalLM(c).model.ecg_tower.ecg_tower.transformer.resblocks[0].eval()
    mha = torch.nn.MultiheadAttention(c.ecg_width, c.ecg_heads)
    mha.load_state_dict({"in_proj_weight": block.attn.in_proj_weight, "in_proj_bias": block.attn.in_proj_bias,
                         "out_proj.weight": block.attn.out_proj.weight, "out_proj.bias": block.attn.out_proj.bias})
    x = torch.randn(2, 7, c.ecg_width)
    with torch.no_grad():
        y = block.ln_1(x).transpose(0, 1)                       # open_clip runs MHA sequence-first
        attn = mha(y, y, y, need_weights=False)[0].transpose(0, 1)
        want = x + attn
        want = want + block.mlp(block.ln_2(want))
        got = block(x)
    assert (got - want).abs().max() < 1e-5


def test_tiny_loss_falls_and_sentinel_splices_ecg_first():
    torch.manual_seed(0)
    c = GemConfig.from_name("tiny")
    m = GemForCausalLM(c)
    ecg = torch.randn(2, 12, 5000) * 0.5
    img = torch.randn(2, 3, c.vision_image_size, c.vision_image_size)
    ids = [[1, 5, 6, IMAGE_TOKEN_INDEX, 7, 8, 9, 10, 11, 2], [1, 5, IMAGE_TOKEN_INDEX, 7, 12, 13, 2]]
    labels = [[IGNORE_INDEX] * 6 + [9, 10, 11, 2], [IGNORE_INDEX] * 4 + [12, 13, 2]]
    rows = m.multimodal_rows(ecg, img)
    assert rows.shape == (2, c.ecg_tokens + c.image_tokens, c.hidden_size)
    emb, lab = m.splice(ids[0], rows[0], labels[0])
    assert emb.shape[0] == len(ids[0]) - 1 + rows.shape[1]
    assert torch.equal(emb[3:3 + c.ecg_tokens], rows[0, :c.ecg_tokens])      # ECG rows right after the prefix
    assert (lab[3:3 + rows.shape[1]] == IGNORE_INDEX).all()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = m(ids, labels, ecg, img)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    out = m.eval().generate(ids[0][:6], ecg[0], img[0], max_new_tokens=4)
    assert out == [9, 10, 11] or len(out) <= 4
