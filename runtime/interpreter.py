"""The runtime API: `Interpreter.load(bundle).interpret(path)` -> `Result`.

    with Interpreter.load() as gem:                 # the committed demo bundle
        result = gem.interpret("ecg.hea")           # reads, renders, encodes, prefills, decodes greedily
        print(result.text, result.timings)

No torch: numpy, ONNX Runtime (or TensorRT), llama.cpp.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import constants as K
from .bundle import Bundle, default_bundle
from .encoders import load_encoders
from .errors import BackendUnavailableError, BundleError
from .image import load_image, preprocess_image
from .grounding import check_grounding
from .llm import LlamaLLM, LlmTimings, TextStream
from .measure import draw_median_beats, measure_ecg
from .preprocess import preprocess_ecg
from .prompt import build_prompt, prompt_ids
from .readers import EcgRecord, read_ecg
from .render import render_ecg_image


@dataclass
class Result:
    text: str
    source: str
    new_tokens: int
    prompt_positions: int
    timings_ms: dict[str, float]        # read, preprocess, render, ecg_encoder, image_encoder, prefill, decode, total
    decode_tok_s: float
    backends: dict[str, str]
    bundle_id: str
    quant: str
    threads: int
    warnings: list[str] = field(default_factory=list)
    prefix_cached: bool = False
    token_ids: list[int] = field(default_factory=list)     # the generated ids (parity checks)
    measurements: dict = field(default_factory=dict)   # deterministic, from the signal (gem_runtime.measure)
    grounding: list[dict] = field(default_factory=list)  # every number the text states, checked against them

    def to_dict(self) -> dict:
        return asdict(self)

    def measurement_table(self) -> str:
        m = self.measurements
        fmt = lambda k, unit: "-" if m.get(k) is None else f"{m[k]:g} {unit}"
        lines = [f"measured: HR {fmt('hr_bpm', 'bpm')} | PR {fmt('pr_ms', 'ms')} | QRS {fmt('qrs_ms', 'ms')} | "
                 f"QT {fmt('qt_ms', 'ms')} | QTc {fmt('qtc_bazett_ms', 'ms')} (Bazett) | "
                 f"axis P/QRS/T {fmt('p_axis_deg', '')}/{fmt('qrs_axis_deg', '')}/{fmt('t_axis_deg', 'deg')} | "
                 f"rhythm {'regular' if m.get('rhythm_regular') else 'irregular' if m.get('rhythm_regular') is False else '-'}"]
        flags = (m.get("quality") or {}).get("flags") or []
        if flags:
            lines.append(f"quality: {', '.join(flags)}")
        for g in self.grounding:
            tol = f" (tolerance {g['tolerance']:g})" if g.get("tolerance") is not None else ""
            measured = "-" if g["measured"] is None else f"{g['measured']:g}"
            lines.append(f"grounding: {g['quantity']} stated {g['stated']:g}, measured {measured}: "
                         f"{g['verdict']}{tol}{' - ' + g['reason'] if g.get('reason') else ''}")
        if not self.grounding:
            lines.append("grounding: the text states no heart rate, interval or axis")
        return "\n".join(lines)

    def timing_table(self) -> str:
        t = self.timings_ms
        rows = [("read", t["read"], ""), ("preprocess", t["preprocess"], ""),
                ("render", t["render"], "" if t["render"] else "(image given)"),
                ("ecg encoder", t["ecg_encoder"], self.backends["ecg_encoder"]),
                ("image encoder", t["image_encoder"], self.backends["image_encoder"]),
                ("prefill / TTFT", t["prefill"], f"{self.prompt_positions} positions"
                                                 f"{', prefix KV reused' if self.prefix_cached else ''}"),
                ("decode", t["decode"], f"{self.new_tokens} tokens, {self.decode_tok_s:.1f} tok/s"),
                ("measure", t["measure"], "for the grounding check"),
                ("total", t["total"], "")]
        lines = [f"bundle {self.bundle_id} | LLM {self.quant} on {self.backends['llm']} | threads {self.threads}"]
        lines += [f"  {name:15s} {ms:9.1f} ms  {note}" for name, ms, note in rows]
        return "\n".join(lines)


class Interpreter:
    """Sessions and the LLM context are created once; `interpret` can be called many times."""

    def __init__(self, bundle: Bundle, quant: str, backend: str, threads: int, n_ctx: int, n_gpu_layers: int):
        self.bundle, self.quant, self.threads = bundle, quant, threads
        t0 = time.perf_counter()
        self.encoders = load_encoders(bundle, backend, threads)
        gguf = bundle.path(bundle.manifest["llm"][quant])
        self.llm = LlamaLLM(gguf, n_ctx=n_ctx, n_batch=512, n_threads=threads, n_gpu_layers=n_gpu_layers)
        self.llm_backend = f"llama.cpp-{'cuda' if n_gpu_layers else 'cpu'}"
        self.image_size = int(bundle.manifest["preprocessing"]["image_size"])
        rows = bundle.manifest["prompt"]
        self.expected_rows = rows["ecg_rows"] + rows["image_rows"]
        self.load_ms = (time.perf_counter() - t0) * 1000

    @classmethod
    def load(cls, bundle: str | Path | None = None, *, quant: str | None = None, backend: str = "auto",
             threads: int | None = None, n_ctx: int = 2048, n_gpu_layers: int | None = None) -> "Interpreter":
        b = Bundle.open(Path(bundle) if bundle else default_bundle())
        have = b.llm_quants()
        if quant is None:
            quant = b.manifest.get("default_quant") or ("q4_k_m" if "q4_k_m" in have else have[0])
        if quant not in have:
            raise BundleError(b.root, f"no {quant} LLM in this bundle (has {', '.join(have)})")
        threads = threads or min(8, os.cpu_count() or 1)
        if n_gpu_layers is None:
            n_gpu_layers = 999 if backend in ("cuda", "tensorrt") else 0
        if n_gpu_layers and not _llama_has_gpu():
            if backend in ("cuda", "tensorrt"):
                raise BackendUnavailableError(f"backend {backend!r}: this llama-cpp-python build has no GPU offload")
            n_gpu_layers = 0
        return cls(b, quant, backend, threads, n_ctx, n_gpu_layers)

    def close(self):
        self.llm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def interpret(self, ecg: str | Path | EcgRecord, *, image: str | Path | None = None, fs: float | None = None,
                  question: str = K.DEFAULT_QUESTION, max_new_tokens: int = 256,
                  stream: Callable[[str], None] | None = None, save_image: str | Path | None = None,
                  ignore_eos: bool = False) -> Result:
        t = {}
        t0 = time.perf_counter()
        record = ecg if isinstance(ecg, EcgRecord) else read_ecg(ecg, fs=fs)
        img = load_image(image) if image is not None else None
        t["read"] = _ms(t0)

        t1 = time.perf_counter()
        x, warnings = preprocess_ecg(record)                       # (12, 5000) float32
        warnings = list(record.warnings) + warnings
        t["preprocess"] = _ms(t1)

        t1 = time.perf_counter()
        if img is None:
            img = render_ecg_image(x, fs=K.ECG_FS)                 # what the training images were drawn with
            t["render"] = _ms(t1)
        else:
            t["render"] = 0.0
        if save_image is not None:
            _save_atomic(img, Path(save_image))
        t1 = time.perf_counter()
        pixels = preprocess_image(img, self.image_size)            # (3, S, S)
        t["preprocess"] += _ms(t1)

        t1 = time.perf_counter()
        ecg_rows = self.encoders["ecg_encoder"].run(x[None])[0]      # (101, H)
        t["ecg_encoder"] = _ms(t1)
        t1 = time.perf_counter()
        img_rows = self.encoders["image_encoder"].run(pixels[None])[0]  # (N, H)
        t["image_encoder"] = _ms(t1)
        rows = np.concatenate([ecg_rows, img_rows], axis=0)        # ECG rows first, as GEM
        if rows.shape[0] != self.expected_rows:
            raise BundleError(self.bundle.root, f"encoders gave {rows.shape[0]} rows, manifest says {self.expected_rows}")

        ids = prompt_ids(build_prompt(question), self.llm.tokenize)
        s = ids.index(K.IMAGE_TOKEN_INDEX)
        lt = LlmTimings()
        pos = self.llm.prefill(ids[:s], rows, ids[s + 1:], lt)
        t["prefill"] = lt.prefill_ms
        pieces: list[str] = []
        sink = TextStream(self.llm, lambda s_: (pieces.append(s_), stream(s_) if stream else None))
        out = self.llm.generate(pos, max_new_tokens, lt, ignore_eos=ignore_eos, on_token=sink)
        t["decode"] = lt.decode_ms
        t1 = time.perf_counter()
        meas = measure_ecg(x, K.ECG_FS)         # the evidence for the grounding check: after the text, off the TTFT path
        t["measure"] = _ms(t1)
        if save_image is not None and meas.median_beats is not None:  # fiducials on the median beats, beside it
            draw_median_beats(meas, median_beats_path(Path(save_image)))
        t["total"] = _ms(t0)
        if len(out) == max_new_tokens:
            warnings.append(f"stopped at the limit of {max_new_tokens} new tokens before end of text")
        text = "".join(pieces).strip()
        return Result(text=text, source=record.source, new_tokens=len(out),
                      prompt_positions=lt.prefill_positions, timings_ms={k: round(v, 2) for k, v in t.items()},
                      decode_tok_s=round(lt.decode_tok_s, 2),
                      backends={"ecg_encoder": self.encoders["ecg_encoder"].backend,
                                "image_encoder": self.encoders["image_encoder"].backend, "llm": self.llm_backend},
                      bundle_id=self.bundle.bundle_id, quant=self.quant, threads=self.threads,
                      warnings=warnings, prefix_cached=lt.prefix_cached,
                      token_ids=out, measurements=meas.to_dict(),
                      grounding=[g.to_dict() for g in check_grounding(text, meas)])


def median_beats_path(image_path: Path) -> Path:
    return image_path.with_name(image_path.stem + "-median-beats.png")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _save_atomic(img, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def _llama_has_gpu() -> bool:
    import llama_cpp as L

    return bool(L.llama_supports_gpu_offload())
