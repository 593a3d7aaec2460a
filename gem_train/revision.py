"""The runtime's rhythm revision (`gem_runtime.revise`) on the PyTorch model, for `gem-train eval --real --revise`:
the same algorithm, the model reached through full forward passes (the demo model is small enough)."""
from __future__ import annotations

import torch

from gem_runtime.revise import Revised, log_softmax_at, revise_rhythm


class TorchScorer:
    """`gem_runtime.revise.ScoringModel` on a GemForCausalLM, one prompt and one ECG."""

    def __init__(self, model, tok, prompt: list[int], ecg, pixels, generated: list[int]):
        self.model, self.tok, self.prompt, self.generated = model, tok, list(prompt), list(generated)
        with torch.inference_mode():
            self.rows = model.multimodal_rows(torch.from_numpy(ecg)[None], torch.from_numpy(pixels)[None])[0]
        self.ecg, self.pixels = ecg, pixels

    def continuation_ids(self, text: str) -> list[int]:
        return self.tok.sp.encode(text)

    def piece(self, token: int) -> bytes:
        piece = self.tok.sp.id_to_piece(int(token))
        if self.tok.sp.is_byte(int(token)):                      # "<0x0A>"
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode()

    @torch.inference_mode()
    def next_logprobs(self, keep: int):
        embeds, _ = self.model.splice(self.prompt + self.generated[:keep], self.rows)
        return torch.log_softmax(self.model.llm(embeds[None])[0, -1].double(), -1).numpy()

    @torch.inference_mode()
    def logprob(self, keep: int, candidate: list[int]) -> float:
        embeds, _ = self.model.splice(self.prompt + self.generated[:keep] + candidate, self.rows)
        logits = self.model.llm(embeds[None])[0]
        first = embeds.shape[0] - len(candidate) - 1
        return sum(log_softmax_at(logits[first + i].float().numpy(), t) for i, t in enumerate(candidate))

    def continue_after(self, keep: int, candidate: list[int], max_new_tokens: int) -> list[int]:
        ids = self.prompt + self.generated[:keep] + candidate
        rest = self.model.generate(ids, torch.from_numpy(self.ecg), torch.from_numpy(self.pixels), max_new_tokens,
                                   eos_id=self.tok.eos_id) if max_new_tokens > 0 else []
        self.generated = self.generated[:keep] + candidate + rest
        return rest


def revise_torch(model, tok, prompt: list[int], ecg, pixels, generated: list[int], meas, sex=None,
                 max_new_tokens: int = 256) -> Revised:
    return revise_rhythm(TorchScorer(model, tok, prompt, ecg, pixels, generated), generated, meas, sex=sex,
                         max_new_tokens=max_new_tokens)
