"""`gem-train eval`: greedy generation with the PyTorch model on held-out records, scored from the text; on real
ECGs, what the model says beside what the cart that recorded them says; and on folders of labelled real records,
the rhythm and conditions named against their cardiologists' labels and what the diagnosis grounding flags."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from gem_runtime.constants import DEFAULT_QUESTION, ECG_FS
from gem_runtime.errors import GemEdgeError
from gem_runtime.prompt import build_prompt, prompt_ids

from .checkpoint import load_checkpoint
from .corpus import read_records
from .scoring import parse_diagnoses, parse_heart_rate, parse_rhythm, score
from .tokenizer import SpTokenizer
from .train import load_ecg_array, load_pixels


def rendered_pixels(model, x):
    """The paper image of an ECG ((12, 5000) mV) as gem-run renders it, preprocessed for the model's CLIP."""
    from gem_runtime.image import preprocess_image
    from gem_runtime.render import render_ecg_image

    return preprocess_image(render_ecg_image(x, fs=ECG_FS), model.config.vision_image_size)


def reference_ids(model, tok: SpTokenizer, x, max_new_tokens: int = 256,
                  question: str = DEFAULT_QUESTION, pixels=None) -> list[int]:
    """PyTorch's greedy report on an ECG as GEM's preprocessing gives it ((12, 5000) mV), with the paper image
    rendered from the signal as gem-run renders it (`pixels`, when the caller has them already): the reference a
    runtime's text is compared with."""
    pixels = rendered_pixels(model, x) if pixels is None else pixels
    return model.generate(prompt_ids(build_prompt(question), tok), torch.from_numpy(x), torch.from_numpy(pixels),
                          max_new_tokens, eos_id=tok.eos_id)


def evaluate_checkpoint(ckpt: Path, data_dir: Path, n: int, max_new_tokens: int = 256, revise: bool = False) -> dict:
    """revise: also score the texts as gem-run --revise-rhythm revises them (under "revised")."""
    from gem_runtime.measure import measure_ecg

    from .revision import revise_torch

    ckpt, data_dir = Path(ckpt), Path(data_dir)
    records = read_records(data_dir, n)                 # the user's inputs checked before the model loads
    model = load_checkpoint(ckpt)
    tok = SpTokenizer(ckpt / "tokenizer.model")
    texts, revised, n_revised = [], [], 0
    for r in tqdm(records, desc="eval", unit="rec"):
        ecg = load_ecg_array(data_dir / (r["ecg"] + ".hea"))
        pixels = load_pixels(data_dir / r["image"], model.config.vision_image_size)
        ids = prompt_ids(build_prompt(r["conversations"][0]["value"]), tok)
        out = model.generate(ids, torch.from_numpy(ecg), torch.from_numpy(pixels), max_new_tokens, eos_id=tok.eos_id)
        texts.append(tok.decode(out))
        if revise:
            rev = revise_torch(model, tok, ids, ecg, pixels, out, measure_ecg(ecg, ECG_FS), max_new_tokens=max_new_tokens)
            revised.append(tok.decode(rev.ids))
            n_revised += bool(rev.revisions)
    truths = [r["machine_measurements"] for r in records]
    res = {"checkpoint": str(ckpt), "data": str(data_dir), "scores": score(texts, truths),
           "samples": [{"id": r["id"], "text": t} for r, t in zip(records[:20], texts[:20])]}
    if revise:
        res["revised"] = {"scores": score(revised, truths), "reports_revised": n_revised,
                          "samples": [{"id": r["id"], "text": t, "model_text": m}
                                      for r, t, m in zip(records, revised, texts) if t != m]}
    return res


@dataclasses.dataclass(frozen=True)
class RealEcgReading:
    """One real ECG: the model's text and what it states, beside the cart's statements and our own measurement."""

    file: str
    text: str
    rhythm: str | None                 # the rhythm the text names (scoring.parse_rhythm)
    diagnoses: list[str]
    stated_hr_bpm: float | None
    measured_hr_bpm: float | None      # gem_runtime.measure on the same signal
    device: str | None                 # vendor and model, where the file names them
    device_hr_bpm: float | None
    device_statements: list[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_real(ckpt: Path, files: list[Path], max_new_tokens: int = 256) -> list[RealEcgReading]:
    """Each file read, preprocessed and rendered as `gem-run` does, interpreted by the PyTorch model."""
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    records = [read_ecg(f) for f in files]               # a file that cannot be read stops before the model loads
    model = load_checkpoint(Path(ckpt))
    tok = SpTokenizer(Path(ckpt) / "tokenizer.model")
    out = []
    for f, record in zip(files, records):
        x, _ = preprocess_ecg(record)
        text = tok.decode(reference_ids(model, tok, x, max_new_tokens))
        d = record.device
        out.append(RealEcgReading(
            file=Path(f).name, text=text, rhythm=parse_rhythm(text), diagnoses=sorted(parse_diagnoses(text)),
            stated_hr_bpm=parse_heart_rate(text), measured_hr_bpm=measure_ecg(x, ECG_FS).hr_bpm,
            device=None if d is None else f"{d.vendor} {d.model}",
            device_hr_bpm=None if d is None else d.measurements.get("hr_bpm"),
            device_statements=[] if d is None else list(d.statements)))
    return out


def evaluate_labelled(ckpt: Path, folders: list[Path], max_new_tokens: int = 256, log=None,
                      revise: bool = False) -> dict:
    """The model on folders of labelled WFDB records (SNOMED `# Dx:` codes, or LUDB's diagnoses): the rhythm named
    right or not, each condition's counts (named and true, over-called, missed), and how many of the model's wrong
    and right statements the diagnosis grounding flags; beside it the grounding checked against the labels alone
    (`real_labels.ground_labels`), which needs no model. A record that cannot be read is listed and left out.
    revise: also score the reports after the runtime's rhythm revision (`gem_runtime.revise`, under "revised"),
    beside the model's own, with each revision made."""
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    from .real_labels import ground_labels, labelled_headers, read_labels
    from .revision import revise_torch

    heads = [h for folder in folders for h in labelled_headers(Path(folder))]
    if not heads:
        raise GemEdgeError(f"{', '.join(map(str, folders))}: no labelled WFDB records (headers with '# Dx:' "
                           "SNOMED codes or LUDB diagnoses)")
    records, skipped = [], []
    for h in heads:
        try:
            x, _ = preprocess_ecg(read_ecg(h))
        except GemEdgeError as e:
            skipped.append({"record": h.stem, "reason": str(e)})
            continue
        records.append((h, read_labels(h), x, measure_ecg(x, ECG_FS)))
    out = {"checkpoint": str(ckpt), "folders": [str(f) for f in folders], "n_records": len(records),
           "skipped": skipped, "grounding_of_labels": ground_labels([(lab, m) for _, lab, _, m in records])}
    model = load_checkpoint(Path(ckpt))
    tok = SpTokenizer(Path(ckpt) / "tokenizer.model")
    readings, revised, revisions = [], [], []
    for h, labels, x, meas in tqdm(records, desc="eval --real", unit="rec", disable=log is None):
        pixels = rendered_pixels(model, x)
        ids = reference_ids(model, tok, x, max_new_tokens, pixels=pixels)
        text = tok.decode(ids)
        readings.append((labels, meas, text))
        if revise:
            rev = revise_torch(model, tok, prompt_ids(build_prompt(DEFAULT_QUESTION), tok), x, pixels, ids, meas,
                               sex=labels.sex, max_new_tokens=max_new_tokens)
            revised.append((labels, meas, tok.decode(rev.ids)))
            revisions += [{"record": labels.record, "truth_rhythm": labels.rhythm, **r.to_dict()}
                          for r in rev.revisions]
    out.update(score_labelled(readings))
    if revise:
        part = score_labelled(revised)
        g = part["grounding_of_model"]
        out["revised"] = {"rhythm": part["rhythm"], "conditions": part["conditions"],
                          "grounding_of_model": {k: v for k, v in g.items() if k != "evidence_statements"},
                          "revisions": revisions, "samples": part["samples"]}
    out["by_source"] = {}
    for source in sorted({labels.source for labels, _, _ in readings}):
        part = score_labelled([r for r in readings if r[0].source == source])
        g = part["grounding_of_model"]
        out["by_source"][source] = {"rhythm": part["rhythm"], "grounding_of_model": {
            k: g[k] for k in ("counts", "wrong_statements", "wrong_flagged", "wrong_flagged_share", "right_statements",
                              "right_flagged", "right_flagged_share")}}
    return out


def score_labelled(readings: list) -> dict:
    """Scores of (RecordLabels, Measurements, text) triples: rhythm, conditions, and the grounding's flags on the
    model's own statements (a finding stated several times counts once per record: flagged if any is)."""
    from gem_runtime.diagnosis import CONTRADICTED, CRITERIA, EVIDENCE_FINDINGS, RHYTHM_FINDINGS, check_diagnoses

    from .corpus import AFL as SIM_AFL
    from .real_labels import AF, AFL, SINUS, SR, empty_counts, flag_summary, statement_right
    from .simulate import AF as SIM_AF, NSR as SIM_NSR, SB as SIM_SB, STACH as SIM_STACH

    sim_to_finding = {SIM_NSR: "normal_sinus_rhythm", SIM_SB: "sinus_bradycardia", SIM_STACH: "sinus_tachycardia",
                      SIM_AF: AF, SIM_AFL: AFL}
    rhythm_named = {"n": 0, "right": 0, "none_named": 0}
    confusion: dict[str, dict[str, int]] = {}
    sinus_n = sinus_af = 0
    conditions = {c.finding: {"tp": 0, "fp": 0, "fn": 0, "stated_unlabelled": 0}
                  for c in CRITERIA if c.finding not in RHYTHM_FINDINGS + EVIDENCE_FINDINGS}
    flags = empty_counts()
    evidence: dict[str, dict[str, int]] = {}             # evidence statements ("irregularly irregular"): verdicts
    wrong_missed, right_flagged, samples = [], [], []
    for labels, meas, text in readings:
        verdicts = check_diagnoses(text, meas, sex=labels.sex)
        by_finding: dict[str, list] = {}
        for v in verdicts:
            by_finding.setdefault(v.finding, []).append(v)
        named = parse_rhythm(text)
        named = sim_to_finding.get(named, named)
        if labels.rhythm is not None:
            rhythm_named["n"] += 1
            right = named is not None and (statement_right(named, labels)
                                           or (labels.rhythm == SR and named in SINUS))
            rhythm_named["right"] += bool(right)
            rhythm_named["none_named"] += named is None
            confusion.setdefault(labels.rhythm, {}).setdefault(str(named), 0)
            confusion[labels.rhythm][str(named)] += 1
            if labels.rhythm in SINUS:
                sinus_n += 1
                sinus_af += AF in by_finding
        for finding, vs in by_finding.items():
            right = statement_right(finding, labels)
            if finding in EVIDENCE_FINDINGS:
                verdict = CONTRADICTED if any(v.verdict == CONTRADICTED for v in vs) else vs[0].verdict
                evidence.setdefault(finding, {}).setdefault(verdict, 0)
                evidence[finding][verdict] += 1
                continue
            if finding in conditions:
                c = conditions[finding]
                c["tp" if right else "fp" if right is False else "stated_unlabelled"] += 1
            if finding not in RHYTHM_FINDINGS or right is None:
                continue
            verdict = CONTRADICTED if any(v.verdict == CONTRADICTED for v in vs) else vs[0].verdict
            flags["right" if right else "wrong"][verdict] += 1
            entry = {"record": labels.record, "finding": finding, "verdict": verdict, "reason": vs[0].reason}
            if right and verdict == CONTRADICTED:
                right_flagged.append(entry)
            elif not right and verdict != CONTRADICTED:
                wrong_missed.append(entry)
        for finding in labels.present:
            if finding in conditions and finding not in by_finding:
                conditions[finding]["fn"] += 1
        samples.append({"record": labels.record, "truth_rhythm": labels.rhythm, "labels": list(labels.labels),
                        "named_rhythm": named, "text": text,
                        "verdicts": [{"finding": v.finding, "verdict": v.verdict, "reason": v.reason}
                                     for v in verdicts]})
    n = rhythm_named["n"]
    return {
        "rhythm": {**rhythm_named, "accuracy": None if n == 0 else round(rhythm_named["right"] / n, 3),
                   "confusion": confusion, "sinus_records": sinus_n, "sinus_called_af": sinus_af},
        "conditions": {f: c for f, c in conditions.items() if any(c.values())},
        "grounding_of_model": {"counts": flags, **flag_summary(flags), "evidence_statements": evidence,
                               "wrong_not_flagged_statements": wrong_missed,
                               "right_flagged_statements": right_flagged},
        "samples": samples,
    }
