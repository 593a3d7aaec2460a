"""GEM's own inference path, as its repository runs it, for `gem-bench latency --reference hf` (the default).

GEM (`llava/eval/model_ecg_resume.py`) reads the record with `wfdb.rdsamp`, preprocesses the image with HF
`CLIPImageProcessor` (the PIL one at GEM's transformers 4.37), runs the HF `CLIPVisionModel` with
`output_hidden_states=True` (all its layers, then `hidden_states[-2][:, 1:]`), the ECG-CoCa tower, the
projectors, splices the rows into the embeddings (`prepare_inputs_labels_for_multimodal`) and calls HF
`generate(inputs_embeds=...)` greedily on the LLaMA. This module does the same with transformers'
`LlamaForCausalLM` and `CLIPVisionModel` holding the checkpoint's weights (the tests show both equal
our torch model to 1e-4). What differs from GEM, and why:
- the image: GEM loads a PNG drawn beforehand by ecg-image-generator; a new ECG has none, so the reference
  draws it in memory with our renderer (the one the demo model was trained on) and is charged only for that;
- the ECG tower is our `EcgTransformer`, which reads open_clip's tensors and equals nn.MultiheadAttention;
- EOS is ignored (`eos_token_id=None`), so both sides generate the same number of tokens.
Time to first token is taken from a streamer that HF generate calls once per new token.
"""
from __future__ import annotations

import time
from pathlib import Path

from gem_runtime import constants as K

from .latency import cuda_sync, elapsed_ms, reference_front


class _TokenClock:
    """An HF streamer that only stamps the time of each `put` (the first put is the prompt)."""

    def __init__(self):
        self.stamps: list[float] = []

    def put(self, value):
        self.stamps.append(time.perf_counter())

    def end(self):
        pass


class HfReference:
    def __init__(self, a):
        import torch
        import transformers
        from transformers import CLIPVisionModel, LlamaForCausalLM

        from gem_train import hf
        from gem_train.checkpoint import load_checkpoint
        from gem_train.tokenizer import SpTokenizer

        torch.set_num_threads(a.threads)
        self.torch = torch
        self.device = "cuda" if a.gpu else "cpu"
        self.dtype = torch.float16 if a.gpu else torch.float32
        t0 = time.perf_counter()
        gem = load_checkpoint(a.checkpoint, dtype=self.dtype)
        c = gem.config
        sd = gem.state_dict()
        # Built on the meta device and given the loaded tensors themselves (assign), as from_pretrained does:
        # no random init and no second copy of the weights in the reference's load time and peak RSS.
        with torch.device("meta"):
            llm = LlamaForCausalLM(hf.llama_config(c))
            clip = CLIPVisionModel(hf.clip_vision_config(c))
        _assign(llm, hf.llama_state(sd), "rotary")
        llm.model.rotary_emb = type(llm.model.rotary_emb)(config=llm.config)        # a buffer, not in checkpoints
        _assign(clip, hf.clip_state(sd, clip), "position_ids")
        emb = next(m for m in clip.modules() if type(m).__name__ == "CLIPVisionEmbeddings")   # 4.x/5.x nest differently
        emb.register_buffer("position_ids", torch.arange(emb.num_positions).expand((1, -1)), persistent=False)
        on_meta = [n for n, t in [*llm.named_parameters(), *llm.named_buffers(), *clip.named_parameters(),
                                  *clip.named_buffers()] if t.is_meta]
        if on_meta:
            raise RuntimeError(f"tensors left without values: {on_meta[:5]}")
        self.llm = llm.to(self.device, self.dtype).eval()
        self.clip = clip.to(self.device, self.dtype).eval()
        self.ecg_tower = gem.model.ecg_tower.ecg_tower.to(self.device).eval()
        self.ecg_projector = gem.model.ecg_projector.to(self.device)
        self.mm_projector = gem.model.mm_projector.to(self.device)
        del gem
        self.select_layer = c.mm_vision_select_layer
        processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        self.processor = processor(size={"shortest_edge": c.vision_image_size},
                                   crop_size={"height": c.vision_image_size, "width": c.vision_image_size})
        self.tok = SpTokenizer(Path(a.checkpoint) / "tokenizer.model")
        self._sync()
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.new_tokens = a.new_tokens
        attn = getattr(self.llm.config, "_attn_implementation", "default")
        self.info = {"backend": f"transformers {transformers.__version__} LlamaForCausalLM.generate + "
                                f"CLIPVisionModel, torch {torch.__version__} eager "
                                f"{str(self.dtype).split('.')[-1]} on {self.device}, attention {attn}, "
                                f"{torch.get_num_threads()} threads",
                     "reference": "hf"}

    def _sync(self):
        cuda_sync(self.torch, self.device)

    def run(self, ecg: Path) -> tuple[dict, str, int]:
        from gem_runtime.prompt import build_prompt, prompt_ids, split_prompt

        torch = self.torch
        x, pixels, t, t0 = reference_front(                               # (1, 3, S, S): GEM's process_images
            ecg, lambda img: self.processor.preprocess(img, return_tensors="pt")["pixel_values"])
        ids = prompt_ids(build_prompt(K.DEFAULT_QUESTION), self.tok)
        with torch.inference_mode():
            ecg_t = torch.from_numpy(x)[None].to(self.device, self.dtype)
            t1 = time.perf_counter()
            ecg_rows = self.mm_projector(self.ecg_projector(self.ecg_tower(ecg_t)))          # (1, 101, H)
            self._sync()
            t["ecg_encoder"] = elapsed_ms(t1)
            t1 = time.perf_counter()
            hidden = self.clip(pixels.to(self.device, self.dtype), output_hidden_states=True).hidden_states
            img_rows = self.mm_projector(hidden[self.select_layer][:, 1:])                   # (1, N, H)
            self._sync()
            t["image_encoder"] = elapsed_ms(t1)
            t1 = time.perf_counter()
            rows = torch.cat([ecg_rows, img_rows], dim=1)[0]              # ECG rows first, as GEM
            before, after = split_prompt(ids)
            emb = self.llm.get_input_embeddings()
            pre = emb(torch.tensor(before, device=self.device))
            post = emb(torch.tensor(after, device=self.device))
            embeds = torch.cat([pre, rows.to(pre.dtype), post])[None]     # (1, T, H)
            clock = _TokenClock()
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                                                                     device=self.device),
                                    max_new_tokens=self.new_tokens, do_sample=False, num_beams=1, use_cache=True,
                                    eos_token_id=None, pad_token_id=0, streamer=clock)
            self._sync()
            t_end = time.perf_counter()
        first = clock.stamps[1]                                           # stamps[0]: the (empty) prompt ids
        t["prefill"] = (first - t1) * 1000
        t["ttft"] = (first - t0) * 1000
        t["decode"] = (t_end - first) * 1000
        t["total"] = (t_end - t0) * 1000
        new = out[0].tolist()
        t["decode_tok_s"] = len(new) / (t["decode"] / 1000)            # as ours: new tokens / decode time
        self.info["prompt_positions"] = embeds.shape[1]
        return t, self.tok.decode(new).strip(), len(new)

    def close(self):
        del self.llm, self.clip


def _assign(module, state: dict, allowed_missing: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    bad = [k for k in missing if allowed_missing not in k] + list(unexpected)
    if bad:
        raise RuntimeError(f"checkpoint tensors do not fit {type(module).__name__}: {bad[:5]}")
