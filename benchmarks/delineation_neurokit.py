"""neurokit2's DWT delineation (after Martinez et al. 2004) on LUDB, as `gem-bench delineation --neurokit` compares it
with ours: a library delineator for comparison only (`pip install neurokit2`; never a gem-edge dependency)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .delineation import (
    FS,
    INTERVALS,
    MS,
    interval_stats,
    reference_beats,
    reference_intervals,
)


def neurokit_intervals(signal: np.ndarray) -> dict[str, float | None]:
    """neurokit2's DWT delineation (ecg_delineate, method="dwt") per lead, the record's global intervals as ours:
    per beat, the 2nd earliest onset / 2nd latest offset over the leads, then the median over beats."""
    import neurokit2 as nk

    lead_ii = signal[1]
    clean = nk.ecg_clean(lead_ii, sampling_rate=FS)
    _, info = nk.ecg_peaks(clean, sampling_rate=FS)
    peaks = np.asarray(info["ECG_R_Peaks"])
    keys = ("ECG_P_Onsets", "ECG_P_Offsets", "ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets")
    per_lead, lead_ii_marks = [], None
    for i, x in enumerate(signal):
        try:
            _, waves = nk.ecg_delineate(nk.ecg_clean(x, sampling_rate=FS), peaks, sampling_rate=FS, method="dwt")
            per_lead.append({k: np.asarray(waves[k], dtype=float) for k in keys})
            if i == 1:
                lead_ii_marks = per_lead[-1]
        except Exception:                              # noqa: BLE001, S112 - a lead neurokit2 cannot delineate
            continue
    if len(per_lead) < 2:
        return {v: {k: None for k in INTERVALS} for v in ("second", "median", "lead_ii")}
    stack = {k: np.stack([lw[k][:len(peaks)] for lw in per_lead]) for k in keys}   # (leads, beats)

    def second(a, latest=False):
        """(beats,): per beat, the 2nd earliest (2nd latest) of the leads' marks; NaN where under 2 leads have one."""
        a = np.where(np.isfinite(a), a, -np.inf if latest else np.inf)
        a = -np.sort(-a, axis=0) if latest else np.sort(a, axis=0)
        return np.where(np.isfinite(a[1]), a[1], np.nan)

    def middle(a, latest=False):
        """(beats,): per beat, the median of the leads' marks (robust to neurokit2's stray per-lead marks)."""
        return np.nanmedian(np.where(np.isfinite(a), a, np.nan), axis=0)

    def med(v):
        v = v[np.isfinite(v)]
        return float(np.median(v)) * MS if v.size else None

    def lead_ii(a, latest=False):
        return a[0]

    out = {}
    picks = [("second", second, stack), ("median", middle, stack)]
    if lead_ii_marks is not None:
        picks.append(("lead_ii", lead_ii, {k: lead_ii_marks[k][None, :len(peaks)] for k in keys}))
    else:
        out["lead_ii"] = {k: None for k in INTERVALS}
    for name, pick, stack in picks:
        p_on, p_off = pick(stack["ECG_P_Onsets"]), pick(stack["ECG_P_Offsets"], True)
        q_on, q_off = pick(stack["ECG_R_Onsets"]), pick(stack["ECG_R_Offsets"], True)
        t_off = pick(stack["ECG_T_Offsets"], True)
        out[name] = {"pr_ms": med(q_on - p_on), "p_ms": med(p_off - p_on), "qrs_ms": med(q_off - q_on),
                     "qt_ms": med(t_off - q_on)}
    return out


def score_neurokit(ludb: Path, records: list[int]) -> dict:
    import warnings

    import neurokit2 as nk
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    variants = ("second", "median", "lead_ii")
    errs = {v: {k: [] for k in INTERVALS} for v in variants}
    nulls = {v: {k: 0 for k in INTERVALS} for v in variants}
    times = []
    for record in records:
        ref = reference_intervals(reference_beats(ludb, record))
        signal, _ = preprocess_ecg(read_ecg(ludb / f"{record}.hea"))
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = neurokit_intervals(np.asarray(signal, dtype=float))
        except Exception:                              # noqa: BLE001 - count as all null
            theirs = {v: {k: None for k in INTERVALS} for v in variants}
        times.append((time.perf_counter() - start) * 1000)
        for v in variants:
            for k in INTERVALS:
                if ref[k] is None:
                    continue
                if theirs[v][k] is None:
                    nulls[v][k] += 1
                else:
                    errs[v][k].append(theirs[v][k] - ref[k])
    return {"version": nk.__version__, "records": len(records), "ms_median": float(np.median(times)),
            **{v: {"intervals": {k: interval_stats(e) for k, e in errs[v].items()}, "nulls": nulls[v]}
               for v in variants}}
