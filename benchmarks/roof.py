"""How close each side's LLM stages come to this machine's ceilings, measured in the same run as the latency.

Prefill is a stack of GEMMs: its work is 2 x (weights per layer) x positions per layer plus causal attention
(2 x P^2 x width per layer, QK^T and AV), and its ceiling the machine's fp32 GEMM rate, measured here with
torch at a prefill-like shape (512 positions x 4096 @ 4096 x 4096). Decode of one token reads every weight once:
its ceiling is the read bandwidth (benchmarks.machine.measure_bandwidth) over the bytes one step reads: the
GGUF's tensors for ours (roofline.decode_bytes), fp32 weights for GEM's PyTorch path. Both are kept per layer
and per model, so `gem-bench extrapolate` can state them at 32 layers.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .machine import measure_bandwidth
from .roofline import decode_bytes


@dataclass(frozen=True)
class LlmShape:
    layers: int
    width: int
    ffn: int
    vocab: int

    @property
    def weights_per_layer(self) -> int:          # q, k, v, o + gate, up, down (LLaMA-2, no GQA at 7B)
        return 4 * self.width * self.width + 3 * self.width * self.ffn

    @property
    def fp32_bytes(self) -> int:                 # what GEM's fp32 PyTorch path reads a decode step
        return 4 * (self.layers * self.weights_per_layer + self.width * self.vocab)

    def prefill_flops(self, positions: int, start: int = 0) -> float:
        """Positions start..positions-1 computed (the ones before are a cached prefix), logits for the last."""
        new = positions - start
        # position p attends to p + 1 keys: QK^T and AV, 2 flops a multiply-add each
        attention = 2 * self.width * (positions * (positions + 1) - start * (start + 1))
        return self.layers * (2 * self.weights_per_layer * new + attention) + 2 * self.width * self.vocab


def llm_shape(gguf: Path) -> LlmShape:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def value(key: str) -> int:
        f = fields[key]
        return int(f.parts[f.data[0]][0])
    return LlmShape(value("llama.block_count"), value("llama.embedding_length"),
                    value("llama.feed_forward_length"), value("llama.vocab_size")
                    if "llama.vocab_size" in fields else len(fields["tokenizer.ggml.tokens"].data))


def measure_gemm(threads: int, m: int = 512, k: int = 4096, n: int = 4096, repeats: int = 5) -> dict:
    """fp32 GEMM GFLOP/s with torch on `threads` threads, best of `repeats` (m x k @ k x n)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return {"gflop_s": round(2 * m * k * n / best / 1e9, 1), "shape": [m, k, n], "threads": threads,
            "repeats": repeats, "method": f"torch {torch.__version__} mm, fp32, best of N"}


def measure_roof(gguf: Path, threads: int) -> dict:
    """The model's per-layer work and bytes, and the machine's GEMM rate and read bandwidth, measured now."""
    shape = llm_shape(gguf)
    ours = decode_bytes(gguf)["bytes_per_token"]
    return {"shape": asdict(shape), "gemm": measure_gemm(threads), "bandwidth": measure_bandwidth(threads),
            "ours_bytes_per_token": ours, "ref_bytes_per_token": shape.fp32_bytes}


def fractions(roof: dict, stages: dict, ours_positions: int, ours_start: int, ref_positions: int,
              layers: int | None = None, ours_bytes: float | None = None) -> dict:
    """Prefill GFLOP/s and share of the GEMM rate, decode GB/s and share of the read-bandwidth bound, per side.
    `layers` / `ours_bytes` restate the model at another depth (extrapolation)."""
    shape = LlmShape(**{**roof["shape"], **({"layers": layers} if layers else {})})
    gemm, read = roof["gemm"]["gflop_s"], roof["bandwidth"]["read_gb_s"]
    out = {}
    ours_bytes = ours_bytes or roof["ours_bytes_per_token"]
    for side, positions, start, nbytes in (("ours", ours_positions, ours_start, ours_bytes),
                                           ("ref", ref_positions, 0, shape.fp32_bytes)):
        prefill_s = stages["prefill"][side]["median"] / 1000
        tok_s = stages["decode_tok_s"][side]["median"]
        gflop_s = shape.prefill_flops(positions, start) / prefill_s / 1e9
        out[side] = {"prefill_gflop_s": gflop_s, "prefill_of_gemm": gflop_s / gemm,
                     "decode_gb_s": tok_s * nbytes / 1e9, "decode_of_bandwidth": tok_s * nbytes / 1e9 / read,
                     "decode_bound_tok_s": read * 1e9 / nbytes, "bytes_per_token": nbytes}
    return out


def markdown(roof: dict, frac: dict) -> list[str]:
    g, bw = roof["gemm"], roof["bandwidth"]
    lines = ["", f"Ceilings measured in this run: fp32 GEMM {g['gflop_s']:.0f} GFLOP/s ({g['method']}, "
                 f"{'x'.join(map(str, g['shape']))}, {g['threads']} threads); read bandwidth "
                 f"{bw['read_gb_s']:.1f} GB/s ({bw['threads']} threads, {bw['array_mib']} MiB).", "",
             "| side | prefill GFLOP/s | of fp32 GEMM | decode GB/s read | of read bandwidth | decode bound tok/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for side, name in (("ours", "ours"), ("ref", "GEM's PyTorch path")):
        f = frac[side]
        lines.append(f"| {name} | {f['prefill_gflop_s']:.1f} | {100 * f['prefill_of_gemm']:.0f}% | "
                     f"{f['decode_gb_s']:.2f} | {100 * f['decode_of_bandwidth']:.0f}% | "
                     f"{f['decode_bound_tok_s']:.2f} |")
    return lines
