"""build_bundle: checkpoint -> encoders (ONNX, optional TensorRT) + GGUF LLM (f16 + quantized) + manifest,
ending with the parity gate against the PyTorch model. A bundle whose gate fails stays marked incomplete.

The bundle's names and manifest are the runtime's (`gem_runtime.manifest`); this module only fills them in.
"""
from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gem_runtime import constants as K
from gem_runtime.bundle import Bundle, bundle_id_of, list_files, write_manifest
from gem_runtime.errors import CheckpointError, GemEdgeError
from gem_runtime.manifest import (ENCODERS, FORMAT, FORMAT_VERSION, LLM_TYPES, QUANTIZED, TOKENIZER_FILE,
                                  EncoderEntry, EncoderParity, LlmParity, Manifest, Parity, Preprocessing, Prompt,
                                  in_progress_marker)
from gem_runtime.prompt import build_prompt, prompt_ids, split_prompt
from gem_train.checkpoint import load_checkpoint
from gem_train.model import GemForCausalLM

from .gguf_convert import quantize, write_gguf
from .onnx_export import ENCODERS as ENCODER_EXPORTS
from .onnx_export import export_encoder, export_fp16, export_int8, validate_encoder

FP16_MIN_COSINE = 0.999
INT8_MIN_COSINE = 0.998      # int8 CPU encoders: random GEM-7B-shape weights measured 0.9995, the demo 0.99998
PARITY_TOKENS = 32


@dataclass(frozen=True)
class QuantGate:
    """A quantized LLM passes when the cosine of its last-prompt logits vs torch and its top-1 agreement
    over the teacher-forced greedy continuation reach these. A trained model meets them; random weights with
    near-tied logits may not (`--report-only-quant`)."""
    min_cosine: float
    min_top1: float


# One gate per quantized type gem-export writes: a type without one is refused up front, never defaulted.
QUANT_GATE = {"q8_0": QuantGate(0.995, 0.95), "q6_k": QuantGate(0.99, 0.90), "q5_k_m": QuantGate(0.98, 0.85),
              "q4_k_m": QuantGate(0.95, 0.80), "iq4_nl": QuantGate(0.95, 0.80), "q4_0": QuantGate(0.95, 0.80)}
assert set(QUANT_GATE) == set(QUANTIZED), "every quantized LLM type needs its parity gate"


class ExportGateError(GemEdgeError):
    """The bundle's own parity check failed: the bundle is left marked incomplete."""


@dataclass
class BuildOptions:
    quants: tuple[str, ...] = ("q8_0", "q4_k_m")
    trt: str = "auto"                 # auto | on | off
    threads: int = 2
    quant_gate: bool = True           # False: report the quantized numbers without failing on them
    int8: bool = True                 # int8 CPU encoders beside the fp32 ones (gated; never fail the bundle)
    int8_min_cosine: float = INT8_MIN_COSINE
    ngram_corpus: Path | None = None  # a training corpus: its reports become speculation's draft table
    log: Callable[[str], None] = print
    extra_files: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = [q for q in self.quants if q not in QUANT_GATE]
        if unknown:
            raise ValueError(f"no parity gate for LLM type(s) {', '.join(unknown)}; "
                             f"gem-export writes {', '.join(QUANTIZED)}")     # the CLI checks first


def build_bundle(checkpoint: Path, out: Path, opts: BuildOptions = BuildOptions(), *, model: GemForCausalLM | None = None,
                 ecg_tower_pt: Path | None = None, clip_dir: Path | None = None) -> Manifest:
    log = opts.log
    t_start = time.time()
    checkpoint, out = Path(checkpoint), Path(out)
    model = model or load_checkpoint(checkpoint, ecg_tower_pt=ecg_tower_pt, clip_dir=clip_dir)
    c = model.config
    tok_src = checkpoint / TOKENIZER_FILE
    if not tok_src.exists():
        raise CheckpointError(checkpoint, f"no {TOKENIZER_FILE}: the bundle needs the checkpoint's tokenizer")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, in_progress_marker())           # the runtime refuses the folder until the gate passes
    torch.set_num_threads(opts.threads)

    # 1. encoders
    encoders, enc_parity = {}, {}
    for spec in ENCODER_EXPORTS.values():
        path = out / spec.io.onnx_file()
        log(f"[export] {spec.name}: torch.onnx.export(dynamo=True) opset 18 ...")
        info = export_encoder(model, spec, path)
        res = enc_parity[spec.name] = validate_encoder(model, spec, path, opts.threads)
        log(f"[{'ok' if res.ok else 'x'}] {spec.name}: cosine {res.cosine or 0:.7f}, "
            f"max |diff| {_num(res.max_abs_diff):.2e} ({info['export_s']} s)")
        fp16 = export_fp16(path, out / spec.io.onnx_file(fp16=True))
        res16 = enc_parity[spec.name + ".fp16"] = validate_encoder(model, spec, out / fp16["file"], opts.threads,
                                                                   FP16_MIN_COSINE)
        log(f"[{'ok' if res16.ok else 'x'}] {spec.name} fp16: cosine {res16.cosine or 0:.7f}, "
            f"max |diff| {_num(res16.max_abs_diff):.2e}")
        encoders[spec.name] = {**info, "rows": spec.rows(c), "fp16_file": fp16["file"]}
        if opts.int8:
            encoders[spec.name]["int8_file"], enc_parity[spec.name + ".int8"] = _int8(model, spec, out, opts)
    from .trt import build_engines, static_check
    for name, io in ENCODERS.items():
        encoders[name] = EncoderEntry(**encoders[name], tensorrt_check=static_check(out / io.onnx_file()))
    tensorrt = build_engines(out, opts.trt, log=log)

    # 2. LLM -> GGUF
    shutil.copy(tok_src, out / TOKENIZER_FILE)
    f16 = out / LLM_TYPES["f16"].file
    log(f"[export] {f16.name}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, vocab {c.vocab_size}")
    state = model.state_dict()
    write_gguf(((k, v.float().numpy()) for k, v in state.items()), c, out / TOKENIZER_FILE, f16, name=c.name)
    llm = {"f16": f16.name}
    ngram_file = _ngrams(out, opts.ngram_corpus, log) if opts.ngram_corpus else None
    for q in opts.quants:
        t0 = time.time()
        dst = quantize(f16, out / LLM_TYPES[q].file, q, opts.threads)
        llm[q] = dst.name
        log(f"[export] {dst.name}: {dst.stat().st_size / 2**20:.1f} MiB ({time.time() - t0:.1f} s)")

    # 3. LLM parity on a full multimodal prompt, then the manifest
    llm_parity = llm_parity_check(model, out, llm, opts, log)
    failures = [f"{n}: {r.problem or f'cosine {r.cosine}'}" for n, r in enc_parity.items()
                if not r.ok and not n.endswith(".int8")]      # a failed int8 encoder is kept, never used
    failures += [f"llm {q}: {r.problem}" for q, r in llm_parity.items() if not r.ok
                 and (q == "f16" or opts.quant_gate)]
    files = list_files(out)
    manifest = Manifest(
        format=FORMAT, format_version=FORMAT_VERSION, complete=False, model=c.to_hf_dict(),
        preprocessing=_preprocessing(c), prompt=_prompt(c), tools=_tools(), llm=llm, encoders=encoders,
        files=files, parity=Parity(encoders=enc_parity, llm=llm_parity), tensorrt=tensorrt,
        bundle_id=bundle_id_of(files), build_seconds=round(time.time() - t_start, 1), ngram_file=ngram_file)
    if failures:
        write_manifest(out, replace(manifest, gate_failures=failures))
        raise ExportGateError(f"{out}: parity gate failed: {'; '.join(failures)} (bundle left marked incomplete)")
    # What gem-run uses when not told: the smallest LLM file that met its parity gate.
    passed = [q for q in QUANTIZED if q in llm_parity and llm_parity[q].ok]
    default = min(passed, key=lambda q: files[llm[q]].bytes) if passed else "f16"
    manifest = replace(manifest, complete=True, default_quant=default)
    write_manifest(out, manifest)
    log(f"[ok] bundle {out} ({manifest.bundle_id}) in {manifest.build_seconds} s")
    return manifest


def llm_parity_check(model: GemForCausalLM, out: Path, llm_files: dict[str, str], opts: BuildOptions,
                     log) -> dict[str, LlmParity]:
    """f16 GGUF: greedy continuation of PARITY_TOKENS identical to torch (exact llama.cpp context: FA off,
    f32 KV). Quantized files: cosine of last-prompt logits and teacher-forced top-1 agreement."""
    from gem_runtime.llm import LlamaLLM, LlmTimings
    from .onnx_export import example_ecg, example_image, cosine

    c = model.config
    ecg = torch.from_numpy(example_ecg(c, 1, 5)[0])
    pix = torch.from_numpy(example_image(c, 1, 6)[0])
    prompt = build_prompt(K.DEFAULT_QUESTION)
    results: dict[str, LlmParity] = {}
    ref_tokens, ref_logits = None, None
    for q in ("f16", *[k for k in llm_files if k != "f16"]):
        with LlamaLLM(out / llm_files[q], n_ctx=2048, n_batch=512, n_threads=opts.threads, exact=True) as llm:
            ids = prompt_ids(prompt, llm.tokenize)
            if ref_tokens is None:                     # torch reference, once
                with torch.inference_mode():
                    rows = model.multimodal_rows(ecg[None], pix[None])[0]
                    emb, _ = model.splice(ids, rows)
                    ref_logits = model.llm(emb[None])[0, -1].float().numpy()
                ref_tokens = model.generate(ids, ecg, pix, PARITY_TOKENS, ignore_eos=True)
                rows_np = rows.float().numpy()
            before, after = split_prompt(ids)
            t = LlmTimings()
            pos = llm.prefill(before, rows_np, after, t)
            first = llm.logits(-1)
            cos = cosine(first, ref_logits)
            if q == "f16":
                got = llm.generate(pos, PARITY_TOKENS, t, ignore_eos=True)
                prefix = _common_prefix(got, ref_tokens)
                ok = got == ref_tokens
                r = LlmParity(ok=ok, cosine=cos, greedy_tokens=len(ref_tokens), identical_prefix=prefix,
                              agree=sum(a == b for a, b in zip(got, ref_tokens)),
                              problem="" if ok else f"greedy text differs from torch after {prefix} of "
                                                    f"{len(ref_tokens)} tokens")
            else:
                agree, logits = 0, first
                for tok in ref_tokens:                 # teacher forcing on the reference continuation
                    agree += int(np.argmax(logits)) == tok
                    pos = llm.eval_tokens([tok], pos)
                    logits = llm.logits(-1)
                top1 = agree / len(ref_tokens)
                gate = QUANT_GATE[q]
                ok = cos >= gate.min_cosine and top1 >= gate.min_top1
                r = LlmParity(ok=ok, cosine=cos, top1_agreement=top1, min_cosine=gate.min_cosine,
                              min_top1=gate.min_top1, problem="" if ok else
                              f"cosine {cos:.4f} (min {gate.min_cosine}) top-1 {top1:.2f} (min {gate.min_top1})")
            results[q] = r
            log(f"[{'ok' if r.ok else 'x'}] llm {q}: last-prompt logits cosine {cos:.6f}" +
                (f", greedy {r.agree}/{len(ref_tokens)} tokens equal" if q == "f16" else
                 f", top-1 agreement {r.top1_agreement:.2f}"))
    return results


def add_engines(out: Path, trt_result: dict) -> Manifest:
    """After `gem-export trt`: record the engines (and timing cache) in an existing, complete bundle."""
    manifest = Bundle.open(out).manifest
    files = list_files(out)
    manifest = replace(manifest, tensorrt=trt_result, files=files, bundle_id=bundle_id_of(files))
    write_manifest(out, manifest)
    return manifest


def _int8(model: GemForCausalLM, spec, out: Path, opts: BuildOptions) -> tuple[str, EncoderParity]:
    t0 = time.time()
    info = export_int8(out / spec.io.onnx_file(), out / spec.io.int8_file)
    res = validate_encoder(model, spec, out / info["file"], opts.threads, opts.int8_min_cosine)
    opts.log(f"[{'ok' if res.ok else 'x'}] {spec.name} int8: cosine {res.cosine or 0:.7f}, max |diff| "
             f"{_num(res.max_abs_diff):.2e} ({time.time() - t0:.1f} s){'' if res.ok else ': kept, never used'}")
    return info["file"], res


def add_int8(out: Path, model: GemForCausalLM, opts: BuildOptions = BuildOptions()) -> Manifest:
    """`gem-export int8`: int8 CPU encoders (and their parity) added to an existing, complete bundle."""
    manifest = Bundle.open(out).manifest
    encoders, parity = dict(manifest.encoders), dict(manifest.parity.encoders)
    for spec in ENCODER_EXPORTS.values():
        file, parity[spec.name + ".int8"] = _int8(model, spec, out, opts)
        encoders[spec.name] = replace(encoders[spec.name], int8_file=file)
    files = list_files(out)
    manifest = replace(manifest, encoders=encoders, parity=replace(manifest.parity, encoders=parity), files=files,
                       bundle_id=bundle_id_of(files))
    write_manifest(out, manifest)
    return manifest


def corpus_ngrams(tokenizer: Path, corpus: Path):
    """Speculation's draft table (gem_runtime.speculate.NgramTable) of a training corpus's reports, in the tokens
    of `tokenizer` (the bundle's SentencePiece model), each report ending in EOS; and how many reports."""
    import sentencepiece as spm

    from gem_runtime.speculate import NgramTable
    from gem_train.corpus import read_records

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    reports = [turn["value"] for r in read_records(corpus) for turn in r["conversations"] if turn["from"] == "gpt"]
    return NgramTable.build(sp.encode(text) + [sp.eos_id()] for text in reports), len(reports)


def _ngrams(out: Path, corpus: Path, log) -> str:
    from gem_runtime.speculate import NGRAM_FILE

    table, n = corpus_ngrams(out / TOKENIZER_FILE, corpus)
    table.save(out / NGRAM_FILE)
    log(f"[export] {NGRAM_FILE}: {len(table)} n-grams from {n} reports of {corpus}")
    return NGRAM_FILE


def add_ngrams(out: Path, corpus: Path, log=print) -> Manifest:
    """`gem-export ngrams`: speculation's draft table added to (or replaced in) an existing, complete bundle."""
    manifest = Bundle.open(out).manifest
    file = _ngrams(out, corpus, log)
    files = list_files(out)
    manifest = replace(manifest, ngram_file=file, files=files, bundle_id=bundle_id_of(files))
    write_manifest(out, manifest)
    return manifest


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _num(x: float | None) -> float:
    return float("nan") if x is None else x


def _preprocessing(c) -> Preprocessing:
    return Preprocessing(leads=list(K.LEADS), ecg_fs=K.ECG_FS, ecg_samples=c.ecg_samples,
                         image_size=c.vision_image_size, image_aspect_ratio="ori", clip_mean=list(K.CLIP_MEAN),
                         clip_std=list(K.CLIP_STD))


def _prompt(c) -> Prompt:
    return Prompt(template="llava_v1", system=K.SYSTEM_PROMPT, roles=list(K.ROLES), sep=K.SEP, sep2=K.SEP2,
                  image_token=K.IMAGE_TOKEN, image_token_index=K.IMAGE_TOKEN_INDEX, ecg_rows=c.ecg_tokens,
                  image_rows=c.image_tokens, default_question=K.DEFAULT_QUESTION, eos_id=K.EOS_ID, bos_id=K.BOS_ID)


def _tools() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {p: v(p) for p in ("torch", "onnx", "onnxruntime", "onnxscript", "gguf", "llama_cpp_python")} \
        | {"python": platform.python_version()}
