"""A random-weight GEM at the real gem-7b shapes, at reduced LLM depth, for timing only.

CLIP ViT-L/14-336 and the ECG-CoCa tower at their real sizes, LLaMA-2-7B layers (hidden 4096, SwiGLU 11008),
vocab 32000 with a real 32000-piece SentencePiece tokenizer (trained here on Python's standard library text,
which has enough distinct words; padded with unused pieces only if a text cannot support 32000). The weights
are rounded to fp16 before anything is written, so the checkpoint the reference loads and the bundle we run
hold the same numbers.
"""
from __future__ import annotations

import re
import sysconfig
import time
from pathlib import Path

VOCAB = 32000


def tokenizer_text(out: Path, megabytes: int = 24) -> Path:
    """Text to train the 32000-piece tokenizer on: the standard library's .py files, in sorted order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    limit, size = megabytes * 2**20, 0
    with open(out, "w", encoding="utf-8") as f:
        for p in sorted(root.rglob("*.py")):
            if "site-packages" in p.parts or "test" in p.parts:
                continue
            try:
                text = p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            f.write(text)
            size += len(text)
            if size >= limit:
                break
    return out


def make_tokenizer_32k(out_dir: Path, log=print) -> Path:
    """tokenizer.model with exactly 32000 pieces (the LLaMA vocab size), same options as gem_train's."""
    import sentencepiece as spm

    from gem_train.tokenizer import train_tokenizer, write_hf_files

    out_dir = Path(out_dir)
    model = out_dir / "tokenizer.model"
    if model.exists() and spm.SentencePieceProcessor(model_file=str(model)).get_piece_size() == VOCAB:
        return model
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tokenizer_text(out_dir / "text.txt")
    t0 = time.time()
    try:
        train_tokenizer(text, out_dir, VOCAB)
        how = "trained"
    except ValueError as e:                # the text supports fewer pieces: pad with never-matched ones
        m = re.search(r"<= (\d+)", str(e))
        if not m:
            raise
        learnable = int(m.group(1)) - 8
        pad = [f"<unused{i}>" for i in range(VOCAB - learnable)]
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(out_dir / "tokenizer"), vocab_size=VOCAB, user_defined_symbols=pad,
            model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
            allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=2,
            minloglevel=2)
        write_hf_files(out_dir)
        how = f"trained {learnable} pieces, padded with {len(pad)} unused pieces"
    text.unlink()
    log(f"[make-7b] tokenizer: {VOCAB} pieces ({how}) in {time.time() - t0:.0f} s")
    return model


def make_7b(layers: int, out: Path, threads: int = 2, seed: int = 0, tokenizer_dir: Path | None = None,
            log=print) -> dict:
    """out/checkpoint (fp16 safetensors, HF/GEM layout) and out/bundle (ONNX encoders + f16/Q4_K_M GGUF)."""
    import torch

    from gem_export.build import BuildOptions, ExportGateError, build_bundle
    from gem_train.checkpoint import save_checkpoint
    from gem_train.config import GemConfig
    from gem_train.model import GemForCausalLM, count_parameters

    out = Path(out)
    tok_dir = Path(tokenizer_dir) if tokenizer_dir else out / "tokenizer"
    make_tokenizer_32k(tok_dir, log)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = GemConfig.from_name("gem-7b", num_hidden_layers=layers)
    t0 = time.time()
    model = GemForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():                      # the numbers both sides will hold
            p.copy_(p.half().float())
    log(f"[make-7b] random gem-7b, {layers} LLM layers: {count_parameters(model)} ({time.time() - t0:.0f} s)")
    ckpt = save_checkpoint(model, out / "checkpoint", tok_dir, dtype=torch.float16)
    bundle = out / "bundle"
    try:
        opts = BuildOptions(quants=("q4_k_m", "iq4_nl", "q4_0"), trt="off", threads=threads, quant_gate=False,
                            log=log)
        build_bundle(ckpt, bundle, opts, model=model)
        _accept_for_timing(bundle, None, log)
    except ExportGateError as e:
        _accept_for_timing(bundle, str(e), log)
    return {"checkpoint": ckpt, "bundle": bundle, "tokenizer": tok_dir / "tokenizer.model", "layers": layers}


def _accept_for_timing(bundle: Path, failure: str | None, log) -> None:
    """Mark the bundle timing only, always: random weights have near-tied logits, so a parity gate passes or fails
    on a rounding flip that a trained model never shows, and `gem-run tune` would take f16 or a q4 type by that
    chance. With the note (the manifest's `note`) tune times every LLM type and knob and keeps the fastest, as it
    would where a trained model's gates pass. Encoder failures are real and re-raised."""
    import json
    from dataclasses import replace

    from gem_runtime.bundle import write_manifest
    from gem_runtime.manifest import MANIFEST_FILE, Manifest

    m = Manifest.from_dict(json.loads((bundle / MANIFEST_FILE).read_text()))
    if any(not f.startswith("llm ") for f in m.gate_failures or []):
        raise RuntimeError(f"{bundle}: {failure}")
    write_manifest(bundle, replace(m, complete=True, note="random weights, timing only"
                                   + (f"; LLM parity gate not met: {failure}" if failure else "")))
    log("[make-7b] random weights: bundle kept for timing only"
        + (f" ({failure}: near-tied logits)" if failure else ""))
