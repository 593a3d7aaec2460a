"""Latency of one GEM request: our runtime vs the PyTorch reference, stage by stage, on the same ECG.

The two pipelines run in one process, interleaved (ours, ref, ours, ref, ...), so drift in machine load hits
both alike. Every speed-up is computed from the medians of those same runs: ref / ours for times, ours / ref
for tok/s. Peak RSS comes from two fresh subprocesses (one per side), since a process's peak only grows.

The reference (`hf`, default) is GEM's own path: `wfdb.rdsamp`, NaN -> 0, first 5000 samples, the same paper
renderer, HF CLIPImageProcessor, HF CLIPVisionModel, HF LlamaForCausalLM.generate(inputs_embeds) in eager fp32
(fp16 on CUDA with --gpu), greedy (see hf_reference.py). `lean` swaps in our torch model with its own KV loop.
"""
from __future__ import annotations

import dataclasses
import json
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gem_runtime import constants as K
from gem_runtime.errors import GemEdgeError

# (key, label) of the timed stages, in request order; all in ms, lower is better.
TIME_STAGES = (("read_preprocess", "read + preprocess"), ("measure", "ECG measurements (ours only)"),
               ("render", "image render"),
               ("ecg_encoder", "ECG encoder"), ("image_encoder", "image encoder"),
               ("prefill", "LLM prefill"), ("ttft", "time to first token"),
               ("decode", "decode (all new tokens)"), ("total", "end to end"))
RATE_STAGES = (("decode_tok_s", "decode tok/s"),)     # higher is better
CHART_STAGES = ("read_preprocess", "measure", "render", "ecg_encoder", "image_encoder", "prefill", "decode")
# Work GEM does not do at all: our deterministic measurements (the grounding evidence). No speed-up is defined.
OURS_ONLY = ("measure",)


@dataclass
class LatencyArgs:
    bundle: Path
    checkpoint: Path
    ecg: Path
    runs: int = 5
    warmup: int = 1
    new_tokens: int = 128
    quant: str | None = None
    threads: int = 2
    gpu: bool = False
    rss: bool = True                  # measure peak RSS in two subprocesses (costs one extra request per side)
    label: str = ""
    reference: str = "hf"             # hf: GEM's path (transformers generate); lean: our torch model, own loop
    encoder_precision: str = "auto"   # ours: "auto" (gem-run tune's choice here, else fp32), "fp32" or "int8"
    repack: str = "auto"              # ours: ggml's weight repacking, "auto" (tune's choice), "on", "off", "split"


def repack_choice(choice: str) -> dict:
    """--repack as LoadPlan.resolve's choices (split: the prompt unrepacked, decoding on a repacked copy)."""
    return {"auto": {}, "on": {"repack": True, "decode_repacked": False},
            "off": {"repack": False, "decode_repacked": False},
            "split": {"repack": False, "decode_repacked": True}}[choice]


# --- the two pipelines ----------------------------------------------------------------------------------

class Ours:
    """gem_runtime.Interpreter as a user runs it."""

    def __init__(self, a: LatencyArgs):
        from gem_runtime.interpreter import Interpreter

        backend = "cpu"
        if a.gpu:                          # TensorRT engines if the bundle has them for this GPU, else ORT CUDA
            from gem_runtime.bundle import Bundle
            from gem_runtime.encoders import available_backends

            backend = available_backends(Bundle.open(a.bundle))[0]
            if backend == "cpu":
                raise GemEdgeError(f"{a.bundle}: --gpu, but neither TensorRT nor ONNX Runtime CUDA is usable here")
        self.gem = Interpreter.load(a.bundle, quant=a.quant, backend=backend, threads=a.threads,
                                    encoder_precision=a.encoder_precision, **repack_choice(a.repack))
        self.load_ms = self.gem.load_ms
        self.new_tokens = a.new_tokens
        self.layers = self.gem.bundle.manifest.num_layers

    def run(self, ecg: Path) -> tuple[dict, str, int]:
        r = self.gem.interpret(ecg, max_new_tokens=self.new_tokens, ignore_eos=True)
        t = r.timings
        stages = {"read_preprocess": t["read"] + t["preprocess"], "measure": t["measure"], "render": t["render"],
                  "ecg_encoder": t["ecg_encoder"], "image_encoder": t["image_encoder"], "prefill": t["prefill"],
                  "ttft": t.ttft_ms, "decode": t["decode"], "total": t.total_ms, "decode_tok_s": r.decode_tok_s}
        self.info = {"backends": dataclasses.asdict(r.backends), "quant": r.quant,
                     "prompt_positions": r.prompt_positions, "gguf": str(self.gem.llm.path),
                     "repack": self.gem.llm.repack, "decode_repacked": self.gem.llm.decode_repacked,
                     "prefill_start": self.gem.llm.prefix_len if r.prefix_cached else 0,
                     "prefix_kv_reused": r.prefix_cached}
        return stages, r.text, r.new_tokens

    def close(self):
        self.gem.close()


class LeanReference:
    """A leaner torch baseline than GEM's: our torch model (same math) with a hand-written greedy KV loop, no
    HF generate. `--reference lean`; stages timed here with the same names as ours."""

    def __init__(self, a: LatencyArgs):
        import torch

        from gem_train.checkpoint import load_checkpoint
        from gem_train.tokenizer import SpTokenizer

        torch.set_num_threads(a.threads)
        self.torch = torch
        self.device = "cuda" if a.gpu else "cpu"
        self.dtype = torch.float16 if a.gpu else torch.float32
        t0 = time.perf_counter()
        self.model = load_checkpoint(a.checkpoint, dtype=self.dtype).to(self.device)
        self.tok = SpTokenizer(Path(a.checkpoint) / "tokenizer.model")
        self._sync()
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.new_tokens = a.new_tokens
        self.image_size = self.model.config.vision_image_size
        self.info = {"backend": f"torch {torch.__version__} eager {str(self.dtype).split('.')[-1]} on "
                                f"{self.device}, {torch.get_num_threads()} threads", "reference": "lean"}

    def _sync(self):
        cuda_sync(self.torch, self.device)

    def run(self, ecg: Path) -> tuple[dict, str, int]:
        from gem_runtime.image import preprocess_image
        from gem_runtime.prompt import build_prompt, prompt_ids

        torch = self.torch
        x, pixels, t, t0 = reference_front(ecg, lambda img: preprocess_image(img, self.image_size))   # (3, S, S)
        ids = prompt_ids(build_prompt(K.DEFAULT_QUESTION), self.tok)
        with torch.inference_mode():
            ecg_t = torch.from_numpy(x)[None].to(self.device, self.dtype)
            pix_t = torch.from_numpy(pixels)[None].to(self.device, self.dtype)
            t1 = time.perf_counter()
            ecg_rows = self.model.encode_ecgs(ecg_t)                      # (1, 101, H)
            self._sync()
            t["ecg_encoder"] = elapsed_ms(t1)
            t1 = time.perf_counter()
            img_rows = self.model.encode_images(pix_t)                    # (1, N, H)
            self._sync()
            t["image_encoder"] = elapsed_ms(t1)
            t1 = time.perf_counter()
            rows = torch.cat([ecg_rows, img_rows], dim=1)[0]              # ECG rows first, as GEM
            embeds, _ = self.model.splice(ids, rows)                      # (T, H)
            caches = [dict() for _ in self.model.model.layers]
            logits = self.model.llm(embeds[None], caches=caches)[0, -1]
            self._sync()
            t["prefill"] = elapsed_ms(t1)
            t["ttft"] = elapsed_ms(t0)
            t1 = time.perf_counter()
            out = []
            for _ in range(self.new_tokens):                              # as GemForCausalLM.generate, EOS ignored
                tok = int(logits.argmax())
                out.append(tok)
                step = self.model.model.embed_tokens(torch.tensor([[tok]], device=self.device))
                logits = self.model.llm(step, caches=caches)[0, -1]
            self._sync()
            t["decode"] = elapsed_ms(t1)
        t["total"] = elapsed_ms(t0)
        t["decode_tok_s"] = len(out) / (t["decode"] / 1000)
        self.info["prompt_positions"] = len(ids) - 1 + rows.shape[0]
        return t, self.tok.decode(out).strip(), len(out)

    def close(self):
        del self.model


def reference_pipeline(a: LatencyArgs):
    if a.reference == "hf":
        from .hf_reference import HfReference

        return HfReference(a)
    if a.reference == "lean":
        return LeanReference(a)
    raise ValueError(f"reference {a.reference!r}: choose hf (GEM's path) or lean")


def reference_front(ecg: Path, pixels_of) -> tuple[np.ndarray, object, dict, float]:
    """GEM's steps before the encoders, timed: read as GEM does, draw the page, CLIP pixels (`pixels_of`).
    Returns the (12, 5000) signal, the pixels, the stage timings so far and the request's start time."""
    from gem_runtime.render import render_ecg_image

    t = {}
    t0 = time.perf_counter()
    x = read_like_gem(ecg)                                                # (12, 5000) float32
    t["read_preprocess"] = elapsed_ms(t0)
    t["measure"] = 0.0                                                    # GEM measures nothing
    t1 = time.perf_counter()
    img = render_ecg_image(x, fs=K.ECG_FS)
    t["render"] = elapsed_ms(t1)
    t1 = time.perf_counter()
    pixels = pixels_of(img)
    t["read_preprocess"] += elapsed_ms(t1)
    return x, pixels, t, t0


def cuda_sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def read_like_gem(ecg: Path) -> np.ndarray:
    """GEM's loader: wfdb.rdsamp, NaN -> 0, first 5000 samples (zero-padded if shorter). (12, 5000) float32.
    Leads are put in GEM order by name (GEM trusts the file's order; our test files use GEM's order anyway)."""
    import wfdb

    path = Path(ecg)
    if path.suffix.lower() not in (".hea", ".dat", ""):
        raise GemEdgeError(f"{path}: the reference reads WFDB records only (.hea)")
    signal, fields = wfdb.rdsamp(str(path.with_suffix("")))             # (N, leads) physical units
    names = [n.strip() for n in fields["sig_name"]]
    order = [names.index(lead) for lead in K.LEADS] if all(lead in names for lead in K.LEADS) else range(12)
    x = signal[:, list(order)].T.astype(np.float32)                     # (12, N)
    x[np.isnan(x)] = 0
    out = np.zeros((12, K.ECG_SAMPLES), np.float32)
    n = min(K.ECG_SAMPLES, x.shape[1])
    out[:, :n] = x[:, :n]
    return out


# --- the benchmark ---------------------------------------------------------------------------------------

def run_latency(a: LatencyArgs, log=print) -> dict:
    """Load both sides, run warmup + runs interleaved pairs, and summarize. Returns the results dict."""
    from .machine import machine_info

    if a.runs < 1 or a.warmup < 0 or a.new_tokens < 1:
        raise ValueError(f"runs {a.runs} must be >= 1, warmup {a.warmup} >= 0, new tokens {a.new_tokens} >= 1")
    info = machine_info()
    ours = Ours(a)
    ref = reference_pipeline(a)
    samples = {"ours": {k: [] for k, _ in TIME_STAGES + RATE_STAGES},
               "ref": {k: [] for k, _ in TIME_STAGES + RATE_STAGES}}
    texts, new_tokens = {}, {}
    try:
        for i in range(a.warmup + a.runs):
            for side, pipe in (("ours", ours), ("ref", ref)):
                stages, texts[side], new_tokens[side] = pipe.run(a.ecg)
                kept = i >= a.warmup
                if kept:
                    for k, v in stages.items():
                        samples[side][k].append(float(v))
                log(f"[{'run' if kept else 'warmup'} {i + 1}/{a.warmup + a.runs}] {side:4s} "
                    f"total {stages['total']:9.1f} ms, prefill {stages['prefill']:8.1f} ms, "
                    f"decode {stages['decode_tok_s']:7.1f} tok/s")
        ours_info, ref_info = ours.info, ref.info
        load_ms = {"ours": round(ours.load_ms, 1), "ref": round(ref.load_ms, 1)}
        layers = ours.layers
    finally:
        ours.close()
        ref.close()
    if new_tokens["ours"] != new_tokens["ref"]:
        raise RuntimeError(f"new tokens differ: ours {new_tokens['ours']}, ref {new_tokens['ref']}")
    results = {
        "label": a.label, "machine": info,
        "config": {"bundle": str(a.bundle), "checkpoint": str(a.checkpoint), "ecg": str(a.ecg), "runs": a.runs,
                   "warmup": a.warmup, "new_tokens": a.new_tokens, "threads": a.threads, "gpu": a.gpu,
                   "llm_layers": layers, "reference": a.reference, "quant": a.quant,
                   "encoder_precision": a.encoder_precision, "repack": a.repack,
                   "order": "interleaved: ours, ref, ours, ref, ..."},
        "ours": ours_info, "reference": ref_info,
        "stages": summarize(samples),
        "load_ms": {**load_ms, "speedup": round(load_ms["ref"] / load_ms["ours"], 3)},
        "texts": {"equal": texts["ours"] == texts["ref"], "ours": texts["ours"][:200], "ref": texts["ref"][:200]},
    }
    if not a.gpu:       # the machine's ceilings, measured after the runs so they do not disturb them
        from .roof import fractions, measure_roof

        results["roof"] = measure_roof(Path(ours_info["gguf"]), a.threads)
        results["roof_fractions"] = fractions(results["roof"], results["stages"], ours_info["prompt_positions"],
                                              ours_info["prefill_start"], ref_info["prompt_positions"])
    if a.rss:
        results["peak_rss_mb"] = {side: rss_probe(side, a) for side in ("ours", "ref")}
    return results


def summarize(samples: dict) -> dict:
    """Per stage: median and p90 of each side, and the speed-up from those same medians."""
    out = {}
    for key, label in TIME_STAGES + RATE_STAGES:
        o, r = (np.asarray(samples[s][key], float) for s in ("ours", "ref"))
        om, rm = float(np.median(o)), float(np.median(r))
        higher_better = key in dict(RATE_STAGES)
        if key in OURS_ONLY:
            speedup = None
        else:
            speedup = (om / rm if rm else float("inf")) if higher_better else (rm / om if om else float("inf"))
        out[key] = {"label": label, "unit": "tok/s" if higher_better else "ms",
                    "ours": {"median": om, "p90": float(np.percentile(o, 90)), "runs": o.tolist()},
                    "ref": {"median": rm, "p90": float(np.percentile(r, 90)), "runs": r.tolist()},
                    "speedup": speedup}
    return out


# --- peak RSS, one side per fresh process -----------------------------------------------------------------

def rss_probe(side: str, a: LatencyArgs) -> dict:
    """Peak RSS of a fresh process that imports one side, loads it and serves one request."""
    cmd = [sys.executable, "-m", "benchmarks.latency", side, str(a.bundle), str(a.checkpoint), str(a.ecg),
           str(a.new_tokens), a.quant or "", str(a.threads), "1" if a.gpu else "0", a.reference,
           a.encoder_precision, a.repack]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if p.returncode != 0:
        raise RuntimeError(f"RSS probe for {side} failed: {p.stderr.strip().splitlines()[-1:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _probe_main(argv: list[str]) -> None:
    side, bundle, ckpt, ecg, new_tokens, quant, threads, gpu, reference, precision, repack = argv
    a = LatencyArgs(Path(bundle), Path(ckpt), Path(ecg), new_tokens=int(new_tokens), quant=quant or None,
                    threads=int(threads), gpu=gpu == "1", rss=False, reference=reference,
                    encoder_precision=precision, repack=repack)
    if side == "ours":
        import gem_runtime.interpreter  # noqa: F401  (numpy, ONNX Runtime, llama.cpp)
    else:
        import gem_train.checkpoint  # noqa: F401  (torch)
    base = _peak_mb()
    pipe = Ours(a) if side == "ours" else reference_pipeline(a)
    loaded = _peak_mb()
    pipe.run(a.ecg)
    print(json.dumps({"after_imports": round(base, 1), "after_load": round(loaded, 1),
                      "after_request": round(_peak_mb(), 1)}))


def _peak_mb() -> float:
    """Peak RSS of this process image. /proc VmHWM belongs to the memory map, so it starts fresh at exec;
    getrusage's ru_maxrss does not (Linux carries the forking parent's peak into the child)."""
    status = Path("/proc/self/status")
    if status.exists():
        m = re.search(r"^VmHWM:\s+(\d+) kB", status.read_text(), re.M)
        if m:
            return int(m.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux


def elapsed_ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    _probe_main(sys.argv[1:])
