"""Text -> labels, and ECG-Bench style scores of generated interpretations against simulator truth.

GEM's benchmarks string-match label names in the model's text (evaluation/evaluate_ecgbench.py) and
report macro F1, AUC on binary predictions and Hamming loss. Our corpus ends every text with a fixed
`Impression: <canonical names>.` sentence, so the same string matching is exact here.
"""

from __future__ import annotations

import re

from gem_runtime.grounding import AGREE, agrees, check_grounding
from gem_runtime.measure import Measurements
from gem_train.corpus import AFL
from gem_train.simulate import AF, CONDITIONS, NSR, RHYTHMS, SB, STACH

IMPRESSION = "Impression:"
_HR_RE = re.compile(r"(\d+(?:\.\d+)?)\s*bpm", re.IGNORECASE)
HR_TOLERANCE = 0.10   # a stated rate within 10% of truth counts as right
SPOKEN_RHYTHMS = RHYTHMS + (AFL,)   # the corpus's language also names atrial flutter (real_corpus's made flutters)


def parse_diagnoses(text: str, names: tuple[str, ...] = CONDITIONS) -> set[str]:
    """Canonical condition names in the last `Impression:` sentence, else anywhere in the text."""
    lower = text.lower()
    cut = lower.rfind(IMPRESSION.lower())
    scope = lower[cut + len(IMPRESSION):] if cut >= 0 else lower
    return {name for name in names if name.lower() in scope}


def parse_heart_rate(text: str) -> float | None:
    """The first `<number> bpm` in the text."""
    match = _HR_RE.search(text)
    return float(match.group(1)) if match else None


def parse_rhythm(text: str) -> str | None:
    """The rhythm named in the impression (the first in text order if several), else one read from
    `sinus rhythm` plus the stated rate; None when the text names no rhythm."""
    named = parse_diagnoses(text, SPOKEN_RHYTHMS)
    if len(named) == 1:
        return named.pop()
    if named:
        lower = text.lower()
        return min(named, key=lambda name: lower.find(name.lower()))
    hr = parse_heart_rate(text)
    if "sinus rhythm" in text.lower() and hr is not None:
        return SB if hr < 60 else STACH if hr > 100 else NSR
    if "irregularly irregular" in text.lower():
        return AF
    return None


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def score(predictions: list[str], truths: list[dict]) -> dict:
    """Diagnosis macro-F1 (over conditions that occur in truth or predictions), per-condition F1,
    macro AUC of binary predictions, Hamming loss, rhythm accuracy and heart-rate agreement.

    `truths` are `EcgTruth.to_dict()` dicts (the corpus's `machine_measurements`).
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")
    if not truths:
        raise ValueError("nothing to score: no predictions")
    predicted = [parse_diagnoses(text) for text in predictions]
    actual = [set(t["conditions"]) for t in truths]
    n = len(truths)

    per_condition, counts, aucs = {}, {}, []
    for name in CONDITIONS:
        tp = sum(name in p and name in a for p, a in zip(predicted, actual))
        fp = sum(name in p and name not in a for p, a in zip(predicted, actual))
        fn = sum(name not in p and name in a for p, a in zip(predicted, actual))
        tn = n - tp - fp - fn
        per_condition[name] = _f1(tp, fp, fn)
        counts[name] = {"tp": tp, "fp": fp, "fn": fn}     # whether a low F1 is missed or over-called cases
        if 0 < tp + fn < n:   # AUC of a binary prediction = (sensitivity + specificity) / 2
            aucs.append(0.5 * (tp / (tp + fn) + tn / (tn + fp)))
    defined = [f for f in per_condition.values() if f is not None]
    hamming = sum(len(p ^ a) for p, a in zip(predicted, actual)) / (n * len(CONDITIONS))

    rhythm_hits = sum(parse_rhythm(text) == t["rhythm"] for text, t in zip(predictions, truths))
    hr_errors = []
    hr_hits = 0
    for text, t in zip(predictions, truths):
        hr = parse_heart_rate(text)
        if hr is None:
            continue
        hr_errors.append(abs(hr - t["hr_bpm"]))
        hr_hits += abs(hr - t["hr_bpm"]) <= HR_TOLERANCE * t["hr_bpm"]
    return {
        "n": n,
        "diagnosis_macro_f1": sum(defined) / len(defined) if defined else 0.0,
        "diagnosis_f1": per_condition,
        "diagnosis_counts": counts,
        "diagnosis_macro_auc": sum(aucs) / len(aucs) if aucs else None,
        "hamming_loss": hamming,
        "rhythm_accuracy": rhythm_hits / n,
        "hr_within_10pct": hr_hits / n,
        "hr_mae_bpm": sum(hr_errors) / len(hr_errors) if hr_errors else None,
        "hr_parsed": len(hr_errors) / n,
        "stated_numbers": stated_number_errors(predictions, truths),
    }


_TRUTH_KEYS = ("hr_bpm", "rr_ms", "pr_ms", "p_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
               "p_axis_deg", "qrs_axis_deg", "t_axis_deg")


def stated_number_errors(predictions: list[str], truths: list[dict]) -> dict[str, dict]:
    """For every quantity the texts state (rate, PR, QRS, QT, QTc, axes), read as the runtime's grounding check
    reads them: the share of texts that state it, the mean absolute error against the simulator's truth, and
    the share within the grounding check's tolerance (rate 10% or 5 bpm, PR/QRS 20 ms, QT/QTc 30 ms, axis 20
    degrees). A quantity stated where the truth has none (a PR in AF) counts as stated and not within tolerance."""
    errors: dict[str, list[tuple[float | None, bool]]] = {}
    for text, truth in zip(predictions, truths):
        meas = Measurements(**{k: truth.get(k) for k in _TRUTH_KEYS})
        seen = set()
        for item in check_grounding(text, meas):
            if item.quantity in seen:                       # the first statement of each quantity
                continue
            seen.add(item.quantity)
            error = None
            if item.measured is not None:
                error = abs(item.stated - item.measured)
                if item.quantity.endswith("_deg"):
                    error = abs((item.stated - item.measured + 180.0) % 360.0 - 180.0)
            errors.setdefault(item.quantity, []).append((error, item.verdict == AGREE))
    out = {}
    for quantity, pairs in sorted(errors.items()):
        known = [e for e, _ in pairs if e is not None]
        out[quantity] = {"stated": len(pairs) / len(truths),
                         "mean_abs_error": sum(known) / len(known) if known else None,
                         "within_tolerance": sum(ok for _, ok in pairs) / len(pairs)}
    return out


def findings_agree(reference: str, text: str) -> tuple[bool, bool]:
    """(same conditions named, every number the reference states also stated within the grounding check's
    tolerance of the reference's value): whether a runtime's report says what PyTorch's says."""
    stated = _first_numbers(text)
    numbers = all(q in stated and agrees(q, stated[q], v) for q, v in _first_numbers(reference).items())
    return parse_diagnoses(reference) == parse_diagnoses(text), numbers


def _first_numbers(text: str) -> dict[str, float]:
    """The first value the text states for each quantity, as the grounding check reads it."""
    out: dict[str, float] = {}
    for item in check_grounding(text, Measurements()):
        out.setdefault(item.quantity, item.stated)
    return out
