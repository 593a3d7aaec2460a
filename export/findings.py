"""`gem-export findings`: each LLM type's reports against PyTorch's on fresh synthetic ECGs, by findings.

Token identity is the wrong yardstick for a quantized model (q4_k_m wrote another token sequence than PyTorch on
half the demo's ECGs), but a user needs to know whether the *findings* change: the conditions named and the
numbers stated (rate, intervals, axes, within the grounding check's tolerances of PyTorch's). Each type's counts
go into the manifest's parity; types whose findings match on fewer than FINDINGS_MIN_SHARE of the ECGs are not
chosen by default, neither here nor by `gem-run tune`.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from gem_runtime.bundle import Bundle, write_manifest
from gem_runtime.manifest import FindingsParity, Manifest


def fresh_ecgs(folder: Path, n: int, seed: int) -> list[Path]:
    """n ECGs simulated from `seed` (none of them in a training corpus), written into `folder` as WFDB records."""
    from gem_train.corpus import write_corpus

    records = json.loads(write_corpus(folder, n, seed, images=False, progress=False).read_text())
    return [folder / (r["ecg"] + ".hea") for r in records]


def runtime_reports(root: Path, paths: list[Path], max_new_tokens: int, **choices) -> list[tuple[str, list[int]]]:
    """(text, token ids) of each ECG as gem-run interprets it, loaded with `choices` (Interpreter.load's)."""
    from gem_runtime.interpreter import Interpreter

    with Interpreter.load(root, **choices) as gem:
        return [(r.text, list(r.token_ids)) for r in (gem.interpret(p, max_new_tokens=max_new_tokens)
                                                      for p in paths)]


def compare_findings(reference: list[tuple[str, list[int]]], reports: list[tuple[str, list[int]]],
                     seed: int) -> FindingsParity:
    """How many of `reports` state the findings of `reference` (each (text, token ids), one per ECG)."""
    from gem_train.scoring import findings_agree

    same = conditions = numbers = both = 0
    for (ref_text, ref_ids), (text, ids) in zip(reference, reports, strict=True):
        c, v = findings_agree(ref_text, text)
        same, both = same + (ids == ref_ids), both + (c and v)
        conditions, numbers = conditions + c, numbers + v
    return FindingsParity(n=len(reference), seed=seed, tokens_identical=same, findings_match=both,
                          conditions_match=conditions, numbers_match=numbers)


def findings_parity(checkpoint: Path, bundle_dir: Path, n: int, seed: int, threads: int = 2,
                    max_new_tokens: int = 256, log=print) -> Manifest:
    """PyTorch's greedy report and each LLM type's (as gem-run runs it) on n ECGs simulated from `seed`; the
    counts written into the manifest, and the default type re-chosen: the smallest file among the types whose
    findings match on at least FINDINGS_MIN_SHARE (f16 if none)."""
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_train.checkpoint import load_checkpoint
    from gem_train.evaluate import reference_ids
    from gem_train.tokenizer import SpTokenizer

    bundle = Bundle.open(bundle_dir)
    model = load_checkpoint(checkpoint)
    tok = SpTokenizer(Path(checkpoint) / "tokenizer.model")
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="gem-findings-") as tmp:
        paths = fresh_ecgs(Path(tmp), n, seed)
        reference = []
        for p in paths:
            ids = list(reference_ids(model, tok, preprocess_ecg(read_ecg(p))[0], max_new_tokens))
            reference.append((tok.decode(ids), ids))
        log(f"[findings] PyTorch: {n} reports (seed {seed})")
        results = {}
        for quant in bundle.llm_quants():
            f = compare_findings(reference, runtime_reports(bundle.root, paths, max_new_tokens, quant=quant,
                                                            threads=threads, draft_len=0), seed)
            results[quant] = f
            log(f"[findings] {quant}: findings match {f.findings_match}/{n} (conditions {f.conditions_match}, "
                f"numbers {f.numbers_match}), tokens identical {f.tokens_identical}/{n}")
    m = bundle.manifest
    llm = {q: replace(p, findings=results.get(q)) for q, p in m.parity.llm.items()}
    sizes = {q: m.files[f].bytes for q, f in m.llm.items()}
    passing = [q for q in results if llm[q].usable]
    default = min(passing, key=sizes.get) if passing else "f16"
    m = replace(m, parity=replace(m.parity, llm=llm), default_quant=default)
    write_manifest(bundle.root, m)
    log(f"[findings] default LLM type: {default}")
    return m
