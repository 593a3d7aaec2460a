"""Atrial fibrillation made from a real sinus record's own beats, for the demo model's real corpus.

The shared labelled records hold 6 atrial fibrillations in the training half and ~60 sinus rhythms: the model
learns AF on real QRS-T shapes from too few. `af_from_beats` keeps a sinus record's QRS-T complexes (each cut from
10 ms before its QRS onset to 20 ms past its T end, where the P wave has ended), lays them at irregularly
irregular RR intervals, and bridges each gap, where the P wave was, with a straight line plus fibrillatory waves
(4-9 Hz, drifting, largest in V1 and the inferior leads). The limb leads are built from I and II as a cart derives
them, so Einthoven's relations hold. Used with `write_real_corpus(af_copies=N)`; the held-out records never."""
from __future__ import annotations

import numpy as np

from gem_runtime.constants import ECG_FS, ECG_SAMPLES

CUT_BEFORE_QRS_MS, CUT_AFTER_T_MS = 10.0, 20.0
RATE_BPM = (55.0, 140.0)               # the mean ventricular rate drawn per copy
RR_SIGMA = (0.15, 0.3)                 # log-normal spread of the RR intervals (irregularly irregular)
MIN_GAP_MS = 60.0                      # the shortest bridge between one complex's end and the next one's start
RR_ROOM = 1.25                         # the mean RR at least this many times the shortest (complex + bridge)
F_HZ = (5.0, 7.5)                      # fibrillatory rate (300-450 /min), drifting +-0.8 Hz
F_MV = {"I": (0.01, 0.04), "II": (0.03, 0.08), "V1": (0.05, 0.15), "V2": (0.03, 0.08), "other": (0.01, 0.03)}
LEADS12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def af_from_beats(x: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """(12, 5000) mV at 500 Hz (GEM's lead order) -> (12, 5000) of the same complexes in atrial fibrillation; None
    when fewer than 3 complexes with a QRS onset and a T end are found."""
    segments = qrs_t_complexes(x)
    if segments is None:
        return None
    ms = ECG_FS / 1000.0
    longest = max(s.shape[1] for s in segments)
    shortest_rr = longest + MIN_GAP_MS * ms                              # in samples
    fastest = min(RATE_BPM[1], 60000.0 * ms / (RR_ROOM * shortest_rr))  # room below the mean for irregularity
    if fastest <= RATE_BPM[0]:
        return None
    rr_mean = 60000.0 / rng.uniform(RATE_BPM[0], fastest) * ms
    out = np.zeros((12, ECG_SAMPLES), np.float32)
    pos = int(rng.uniform(0.1, 0.6) * rr_mean)                          # the first complex's start
    prev_end, prev_val = 0, None
    while pos < ECG_SAMPLES:
        seg = segments[int(rng.integers(len(segments)))]
        n = min(seg.shape[1], ECG_SAMPLES - pos)
        start_val = seg[:, 0]
        left = prev_val if prev_val is not None else start_val
        gap = pos - prev_end
        if gap > 0:                                                     # the bridge where the P wave was
            w = np.linspace(0.0, 1.0, gap, endpoint=False)[None, :]
            out[:, prev_end:pos] = (1 - w) * left[:, None] + w * start_val[:, None]
        out[:, pos:pos + n] = seg[:, :n]
        prev_end, prev_val = pos + n, seg[:, n - 1]
        rr = rr_mean * float(np.exp(rng.uniform(*RR_SIGMA) * rng.standard_normal()))
        rr = float(np.clip(rr, shortest_rr, 1.8 * rr_mean))
        pos = prev_end + int(max(MIN_GAP_MS * ms, rr - seg.shape[1]))
    if prev_end < ECG_SAMPLES:
        out[:, prev_end:] = prev_val[:, None]
    return out + _f_waves(rng)


def qrs_t_complexes(x: np.ndarray) -> list[np.ndarray] | None:
    """Each beat's QRS-T complex, (12, n) from CUT_BEFORE_QRS_MS before its QRS onset to CUT_AFTER_T_MS past its T
    end (the P wave left out), as the delineator places them; None when fewer than 3 are found."""
    from gem_runtime.measure import measure_ecg

    m = measure_ecg(x, ECG_FS)
    if not m.has_signal or not m.beat_waves:
        return None
    ms = ECG_FS / 1000.0
    segments = []
    for b in m.beat_waves:
        if b.qrs is None or b.t is None:
            continue
        lo, hi = int(b.qrs[0] - CUT_BEFORE_QRS_MS * ms), int(b.t[1] + CUT_AFTER_T_MS * ms)
        if lo >= 0 and hi < x.shape[1]:
            segments.append(x[:, lo:hi])
    return segments if len(segments) >= 3 else None


def _f_waves(rng: np.random.Generator) -> np.ndarray:
    """(12, 5000) fibrillatory waves: I and II drawn, the other limb leads derived from them, precordial drawn."""
    t = np.arange(ECG_SAMPLES) / ECG_FS
    inst = rng.uniform(*F_HZ) + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(inst) / ECG_FS

    def wave(lead: str) -> np.ndarray:
        amp = rng.uniform(*F_MV.get(lead, F_MV["other"]))
        env = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * t + rng.uniform(0, 2 * np.pi))
        return amp * env * (np.sin(phase + rng.uniform(0, 2 * np.pi)) + 0.3 * np.sin(2 * phase + rng.uniform(0, 6.3)))

    i, ii = wave("I"), wave("II")
    limb = [i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2]
    return np.stack(limb + [wave(lead) for lead in LEADS12[6:]]).astype(np.float32)
