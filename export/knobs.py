"""`gem-export knobs`: one fidelity rule for every speed knob `gem-run tune` may take.

An LLM type is a default only where its findings match PyTorch's on >= FINDINGS_MIN_SHARE of fresh ECGs
(findings.py). The other knobs change the text too (the demo's int8 encoders changed it on 15 of 40 ECGs), so each
is held to the same rule against the same type run plainly (fp32 encoders, plain decoding, repacking on, llama.cpp's
flash attention choice): int8 encoders, repacking off, decoding alone repacked, flash attention off, and every
draft length. The counts go
into the manifest (`Parity.knobs[type][knob]`); `gem-run tune` takes a knob only where they pass, and
`gem-export inspect` shows them.
"""
from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from gem_runtime.bundle import Bundle, write_manifest
from gem_runtime.manifest import (DECODE_REPACKED, ENCODERS, FLASH_ATTN_OFF, INT8_ENCODERS, REPACK_OFF, Manifest,
                                  Parity, draft_knob)


def knob_choices(bundle: Bundle) -> dict[str, dict]:
    """{knob: Interpreter.load choices} for every knob this bundle can take (int8 only where it has int8 encoders
    that passed their gate)."""
    from gem_runtime.tuning import DRAFT_LENGTHS, int8_problem

    out: dict[str, dict] = {REPACK_OFF: {"repack": False, "decode_repacked": False},
                            DECODE_REPACKED: {"repack": False, "decode_repacked": True},
                            FLASH_ATTN_OFF: {"flash_attn": False}}
    if not any(int8_problem(bundle, name) for name in ENCODERS):
        out[INT8_ENCODERS] = {"encoder_precision": dict.fromkeys(ENCODERS, "int8")}
    if bundle.manifest.ngram_file:
        out.update({draft_knob(k): {"draft_len": k} for k in DRAFT_LENGTHS if k})
    return out


def knob_fidelity(bundle_dir: Path, n: int, seed: int, threads: int = 2, quants: list[str] | None = None,
                  only: list[str] | None = None, max_new_tokens: int = 256, log=print) -> Manifest:
    """Each knob's reports against the plain configuration's, by findings, on n ECGs simulated from `seed`, for
    each LLM type in `quants` (default: every type whose own gate passed) and each knob in `only` (default: every
    one the bundle can take); written into the manifest."""
    from .findings import compare_findings, fresh_ecgs, runtime_reports

    bundle = Bundle.open(bundle_dir)
    m = bundle.manifest
    quants = quants or [q for q, p in (m.parity.llm if m.parity else {}).items() if p.usable] or list(m.llm)
    plain = {"encoder_precision": dict.fromkeys(ENCODERS, "fp32"), "draft_len": 0, "repack": True,
             "decode_repacked": False}
    knobs = {q: dict((m.parity or Parity()).knobs.get(q, {})) for q in quants}
    with tempfile.TemporaryDirectory(prefix="gem-knobs-") as tmp:
        paths = fresh_ecgs(Path(tmp), n, seed)
        for quant in quants:
            reference = runtime_reports(bundle.root, paths, max_new_tokens, quant=quant, threads=threads, **plain)
            for knob, choice in knob_choices(bundle).items():
                if only and knob not in only:
                    continue
                f = compare_findings(reference, runtime_reports(bundle.root, paths, max_new_tokens, quant=quant,
                                                                threads=threads, **{**plain, **choice}), seed)
                knobs[quant][knob] = f
                log(f"[knobs] {quant} {knob}: findings as plain's {f.findings_match}/{n}, "
                    f"tokens identical {f.tokens_identical}/{n}")
    parity = m.parity or Parity()
    parity = replace(parity, knobs={**parity.knobs, **knobs})
    m = replace(m, parity=parity)
    write_manifest(bundle.root, m)
    return m

