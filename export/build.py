"""build_bundle: checkpoint -> encoders (ONNX, optional TensorRT) + GGUF LLM (f16 + quantized) + manifest,
ending with the parity gate against the PyTorch model. A bundle whose gate fails stays marked incomplete."""
from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gem_runtime import bundle as B
from gem_runtime import constants as K
from gem_runtime.prompt import build_prompt, prompt_chunks, prompt_ids
from gem_train.checkpoint import load_checkpoint
from gem_train.model import GemForCausalLM

from .gguf_convert import quantize, write_gguf
from .onnx_export import ENCODERS, cosine, export_encoder, export_fp16, validate_encoder

FP16_MIN_COSINE = 0.999

# Per-type gate for quantized LLMs (cosine of last-prompt logits vs torch, top-1 agreement over the
# teacher-forced greedy continuation). A trained model meets these; random weights with near-tied logits may not.
QUANT_GATE = {"q8_0": (0.995, 0.95), "q4_k_m": (0.95, 0.80)}
PARITY_TOKENS = 32


class ExportGateError(RuntimeError):
    """The bundle's own parity check failed: the bundle is left marked incomplete."""


@dataclass
class BuildOptions:
    quants: tuple[str, ...] = ("q8_0", "q4_k_m")
    trt: str = "auto"                 # auto | on | off
    threads: int = 2
    quant_gate: bool = True           # False: report the quantized numbers without failing on them
    log: Callable[[str], None] = print
    extra_files: dict = field(default_factory=dict)


def build_bundle(checkpoint: Path, out: Path, opts: BuildOptions = BuildOptions(), *, model: GemForCausalLM | None = None,
                 ecg_tower_pt: Path | None = None, clip_dir: Path | None = None) -> dict:
    log = opts.log
    t_start = time.time()
    checkpoint, out = Path(checkpoint), Path(out)
    model = model or load_checkpoint(checkpoint, ecg_tower_pt=ecg_tower_pt, clip_dir=clip_dir)
    c = model.config
    tok_src = checkpoint / B.TOKENIZER
    if not tok_src.exists():
        raise FileNotFoundError(f"{tok_src}: the checkpoint has no tokenizer.model")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest_skeleton(c)
    _write_manifest(out, manifest)                      # complete: false until the gate passes
    torch.set_num_threads(opts.threads)

    # 1. encoders
    manifest["encoders"] = {}
    parity = manifest["parity"] = {"encoders": {}, "llm": {}}
    for spec in ENCODERS.values():
        path = out / f"{spec.name}.onnx"
        log(f"[export] {spec.name}: torch.onnx.export(dynamo=True) opset 18 ...")
        info = export_encoder(model, spec, path)
        res = validate_encoder(model, spec, path, opts.threads)
        parity["encoders"][spec.name] = res
        log(f"[{'ok' if res['ok'] else 'x'}] {spec.name}: cosine {res.get('cosine', 0):.7f}, "
            f"max |diff| {res.get('max_abs_diff', float('nan')):.2e} ({info['export_s']} s)")
        manifest["encoders"][spec.name] = {**info, "rows": spec.rows(c)}
        fp16 = export_fp16(path, out / f"{spec.name}.fp16.onnx")
        res16 = validate_encoder(model, spec, out / fp16["file"], opts.threads, FP16_MIN_COSINE)
        parity["encoders"][spec.name + ".fp16"] = res16
        manifest["encoders"][spec.name]["fp16_file"] = fp16["file"]
        log(f"[{'ok' if res16['ok'] else 'x'}] {spec.name} fp16: cosine {res16.get('cosine', 0):.7f}, "
            f"max |diff| {res16.get('max_abs_diff', float('nan')):.2e}")
    from .trt import build_engines, static_check
    for name in ENCODERS:
        manifest["encoders"][name]["tensorrt_check"] = static_check(out / f"{name}.onnx")
    manifest["tensorrt"] = build_engines(out, opts.trt, log=log)

    # 2. LLM -> GGUF
    shutil.copy(tok_src, out / B.TOKENIZER)
    f16 = out / B.llm_file("f16")
    log(f"[export] {f16.name}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size}")
    state = model.state_dict()
    write_gguf(((k, v.float().numpy()) for k, v in state.items()), c, out / B.TOKENIZER, f16, name=c.name)
    manifest["llm"] = {"f16": f16.name}
    for q in opts.quants:
        t0 = time.time()
        dst = quantize(f16, out / B.llm_file(q), q, opts.threads)
        manifest["llm"][q] = dst.name
        log(f"[export] {dst.name}: {dst.stat().st_size / 2**20:.1f} MiB ({time.time() - t0:.1f} s)")

    # 3. LLM parity on a full multimodal prompt
    parity["llm"] = llm_parity(model, out, manifest["llm"], opts, log)
    failures = [f"{n}: cosine {r.get('cosine')}" for n, r in parity["encoders"].items() if not r["ok"]]
    failures += [f"llm {q}: {r['problem']}" for q, r in parity["llm"].items() if not r["ok"]
                 and (q == "f16" or opts.quant_gate)]
    list_files(out, manifest)
    manifest["build_seconds"] = round(time.time() - t_start, 1)
    if failures:
        manifest["gate_failures"] = failures
        _write_manifest(out, manifest)
        raise ExportGateError("parity gate failed: " + "; ".join(failures))
    # What gem-run uses when not told: the smallest LLM file that met its parity gate.
    passed = [q for q in ("q4_k_m", "q8_0") if q in parity["llm"] and parity["llm"][q]["ok"]]
    manifest["default_quant"] = passed[0] if passed else "f16"
    manifest["complete"] = True
    _write_manifest(out, manifest)
    log(f"[ok] bundle {out} ({manifest['bundle_id']}) in {manifest['build_seconds']} s")
    return manifest


def llm_parity(model: GemForCausalLM, out: Path, llm_files: dict, opts: BuildOptions, log) -> dict:
    """f16 GGUF: greedy continuation of PARITY_TOKENS identical to torch (exact llama.cpp context: FA off,
    f32 KV). Quantized files: cosine of last-prompt logits and teacher-forced top-1 agreement."""
    from gem_runtime.llm import LlamaLLM, LlmTimings
    from .onnx_export import _example_ecg, _example_image

    c = model.config
    ecg = torch.from_numpy(_example_ecg(c, 1, 5)[0])
    pix = torch.from_numpy(_example_image(c, 1, 6)[0])
    prompt = build_prompt(K.DEFAULT_QUESTION)
    results = {}
    ref_tokens, ref_logits = None, None
    for q in ("f16", *[k for k in llm_files if k != "f16"]):
        llm = LlamaLLM(out / llm_files[q], n_ctx=2048, n_batch=512, n_threads=opts.threads, exact=True)
        try:
            ids = prompt_ids(prompt, llm.tokenize)
            if ref_tokens is None:                     # torch reference, once
                with torch.inference_mode():
                    rows = model.multimodal_rows(ecg[None], pix[None])[0]
                    emb, _ = model.splice(ids, rows)
                    ref_logits = model.llm(emb[None])[0, -1].float().numpy()
                ref_tokens = model.generate(ids, ecg, pix, PARITY_TOKENS, ignore_eos=True)
                rows_np = rows.float().numpy()
            s = ids.index(K.IMAGE_TOKEN_INDEX)
            t = LlmTimings()
            pos = llm.prefill(ids[:s], rows_np, ids[s + 1:], t)
            first = llm.logits(-1)
            cos = cosine(first, ref_logits)
            if q == "f16":
                got = llm.generate(pos, PARITY_TOKENS, t, ignore_eos=True)
                same = sum(a == b for a, b in zip(got, ref_tokens))
                ok = got == ref_tokens
                results[q] = {"ok": ok, "cosine": cos, "greedy_tokens": len(ref_tokens), "identical_prefix":
                              _common_prefix(got, ref_tokens), "agree": same,
                              "problem": "" if ok else f"greedy text differs from torch after "
                                                       f"{_common_prefix(got, ref_tokens)} of {len(ref_tokens)} tokens"}
            else:
                agree, logits = 0, first
                for tok in ref_tokens:                 # teacher forcing on the reference continuation
                    agree += int(np.argmax(logits)) == tok
                    pos = llm._decode(pos, ids=[tok])
                    logits = llm.logits(-1)
                top1 = agree / len(ref_tokens)
                min_cos, min_top1 = QUANT_GATE.get(q, (0.9, 0.5))
                ok = cos >= min_cos and top1 >= min_top1
                results[q] = {"ok": ok, "cosine": cos, "top1_agreement": top1, "min_cosine": min_cos,
                              "min_top1": min_top1, "problem": "" if ok else
                              f"cosine {cos:.4f} (min {min_cos}) top-1 {top1:.2f} (min {min_top1})"}
            r = results[q]
            log(f"[{'ok' if r['ok'] else 'x'}] llm {q}: last-prompt logits cosine {cos:.6f}" +
                (f", greedy {r['agree']}/{len(ref_tokens)} tokens equal" if q == "f16" else
                 f", top-1 agreement {r['top1_agreement']:.2f}"))
        finally:
            llm.close()
    return results


def list_files(out: Path, manifest: dict) -> None:
    """Every file of the bundle with its size and sha256, and the bundle id derived from them."""
    manifest["files"] = {p.name: B.file_entry(p) for p in sorted(out.iterdir())
                         if p.is_file() and p.name != B.MANIFEST and not p.name.endswith(".tmp")}
    manifest["bundle_id"] = _bundle_id(manifest["files"])


def add_engines(out: Path, trt_result: dict) -> dict:
    """After `gem-export trt`: record the engines (and timing cache) in an existing, complete bundle."""
    manifest = B.Bundle.open(out).manifest
    manifest["tensorrt"] = trt_result
    list_files(out, manifest)
    _write_manifest(out, manifest)
    return manifest


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _bundle_id(files: dict) -> str:
    import hashlib

    h = hashlib.sha256("".join(f"{k}:{v['sha256']}" for k, v in sorted(files.items())).encode())
    return h.hexdigest()[:16]


def _manifest_skeleton(c) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {
        "format": B.FORMAT, "format_version": B.FORMAT_VERSION, "complete": False,
        "model": c.to_hf_dict(),
        "preprocessing": {"leads": list(K.LEADS), "ecg_fs": K.ECG_FS, "ecg_samples": c.ecg_samples,
                          "image_size": c.vision_image_size, "image_aspect_ratio": "ori",
                          "clip_mean": list(K.CLIP_MEAN), "clip_std": list(K.CLIP_STD)},
        "prompt": {"template": "llava_v1", "system": K.SYSTEM_PROMPT, "roles": list(K.ROLES), "sep": K.SEP,
                   "sep2": K.SEP2, "image_token": K.IMAGE_TOKEN, "image_token_index": K.IMAGE_TOKEN_INDEX,
                   "ecg_rows": c.ecg_tokens, "image_rows": c.image_tokens, "default_question": K.DEFAULT_QUESTION,
                   "eos_id": K.EOS_ID, "bos_id": K.BOS_ID},
        "tools": {p: v(p) for p in ("torch", "onnx", "onnxruntime", "onnxscript", "gguf", "llama_cpp_python")}
        | {"python": platform.python_version()},
        "llm": {}, "encoders": {}, "files": {},
    }


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (B.MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / B.MANIFEST)
