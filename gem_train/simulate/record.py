"""`simulate_ecg`: draw conditions, build and check a beat, render the record, measure its `EcgTruth`."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gem_runtime.constants import ECG_SAMPLES

from .beat import DT_MS, PRECORDIAL_ANGLE_DEG, PRECORDIAL_GAIN, build_beat, measure_beat, voltage_scale
from .conditions import (
    AF, AF_MIN_CV, AVB1, AXIS_ACCEPT, AXIS_TARGET, HR_ACCEPT, HR_TARGET, LBBB, MIN_II_QRS_MV,
    MIN_QRS_NET_AREA, NSR, PR_ACCEPT, QRS_ACCEPT, RBBB, RHYTHMS, RR_CV_REGULAR, SB, axis_class,
    sample_conditions, validate_conditions,
)
from .rhythm import draw_rr, place_beats, render_beats
from .stress import IVCD_QRS_ACCEPT, SLOW_HR, SLOW_HR_ACCEPT, Stress, stress_beat, stress_noise


@dataclasses.dataclass
class EcgTruth:
    """What a careful measurement of the simulated record gives; cited by the interpretation text."""

    conditions: list[str]         # canonical names, in CONDITIONS order
    rhythm: str                   # one of RHYTHMS
    hr_bpm: float                 # 60000 / mean RR of the placed R peaks
    rr_ms: float                  # mean RR interval
    rr_regular: bool              # RR coefficient of variation below RR_CV_REGULAR
    rr_cv: float                  # RR standard deviation / mean
    pr_ms: float | None           # P onset to QRS onset (None in AF)
    p_ms: float | None            # P duration (None in AF)
    qrs_ms: float                 # global QRS onset to offset of the QRS dipole
    qt_ms: float                  # QRS onset to T end
    qtc_bazett_ms: float
    qtc_fridericia_ms: float
    p_axis_deg: float | None      # frontal net-area axes, from the noise-free limb leads
    qrs_axis_deg: float
    t_axis_deg: float
    sokolow_lyon_mv: float        # S(V1) + max(R(V5), R(V6)) on the mean beat
    st_j60_mv: list[float]        # per lead (LEADS order): level at J + 60 ms minus the PR level
    r_peaks: list[int]            # sample indices of the R peaks inside the record
    qrs_onsets: list[int]         # sample index of each QRS onset (same beats as r_peaks)

    def to_dict(self) -> dict:
        """JSON-ready, floats rounded so the corpus is compact and byte-stable."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, (float, np.floating)):
                out[key] = round(float(value), 1)
        out["rr_cv"] = round(self.rr_cv, 3)
        out["sokolow_lyon_mv"] = round(float(self.sokolow_lyon_mv), 2)
        out["st_j60_mv"] = [round(float(v), 3) for v in self.st_j60_mv]
        return out


def _check(conds: set[str], rhythm: str, m: dict, hr: float, cv: float, stress: Stress | None = None) -> bool:
    """Does the measured beat land inside its class (with gaps) for every condition (and the stress's own)?"""
    lo, hi = SLOW_HR_ACCEPT if stress and stress.slow_rate and rhythm == SB else HR_ACCEPT[rhythm]
    if not lo <= hr <= hi or (cv < AF_MIN_CV if rhythm == AF else cv > RR_CV_REGULAR / 2):
        return False
    lo, hi = AXIS_ACCEPT[axis_class(conds)]
    if not lo <= m["qrs_axis_deg"] <= hi or m["qrs_net_area"] < MIN_QRS_NET_AREA:
        return False
    if m["qrs_pp_ii"] < 0.9 * MIN_II_QRS_MV:   # the rhythm strip must show every QRS
        return False
    conduction = RBBB if RBBB in conds else LBBB if LBBB in conds else "narrow"
    lo, hi = IVCD_QRS_ACCEPT if stress and stress.ivcd and conduction == "narrow" else QRS_ACCEPT[conduction]
    if not lo <= m["qrs_ms"] <= hi:
        return False
    if rhythm != AF:
        lo, hi = PR_ACCEPT[AVB1 if AVB1 in conds else "normal"]
        if not lo <= m["pr_ms"] <= hi:
            return False
    return True


def simulate_ecg(rng: np.random.Generator, conditions: list[str] | None = None, stress: Stress | None = None
                 ) -> tuple[np.ndarray, EcgTruth]:
    """One 10 s, 500 Hz, 12-lead record in mV, (12, 5000) float32, and its measured truth.

    `conditions` default to `sample_conditions(rng)`. Deterministic for the rng state. A `stress` (see
    `stress.py`) makes the record less kind; without one the record is what it always was.
    """
    conds_list = validate_conditions(sample_conditions(rng) if conditions is None else list(conditions))
    srng = None if stress is None else np.random.default_rng(rng.integers(2**63))
    conds = set(conds_list)
    rhythm = next(c for c in conds_list if c in RHYTHMS)
    v_angles = np.radians(PRECORDIAL_ANGLE_DEG + rng.uniform(-6.0, 6.0, 6))
    v_dirs = PRECORDIAL_GAIN[:, None] * np.stack(
        [np.cos(v_angles), rng.uniform(-0.1, 0.1, 6), np.sin(v_angles)], axis=1)   # (6, 3)

    for _ in range(50):
        hr_lo, hr_hi = SLOW_HR if stress and stress.slow_rate and rhythm == SB else HR_TARGET[rhythm]
        if AVB1 in conds and rhythm == NSR:
            hr_hi = 88.0
        rr_mean = 60000.0 / rng.uniform(hr_lo, hr_hi)
        axis_key = "lbbb normal" if axis_class(conds) == "normal" and LBBB in conds else axis_class(conds)
        beat, nominal = build_beat(rng, conds, rr_mean, rng.uniform(*AXIS_TARGET[axis_key]))
        if stress is not None and stress.changes_beat:
            beat = stress_beat(srng, beat, stress)
        m = measure_beat(beat, v_dirs)
        scale = voltage_scale(rng, conds, m)
        if scale != 1.0:
            beat = dataclasses.replace(beat, qrs=beat.qrs * scale)
            m = measure_beat(beat, v_dirs)

        rr = draw_rr(rng, rhythm, int(ECG_SAMPLES * DT_MS / (0.5 * rr_mean)) + 8, nominal["qt_ms"], rr_mean)
        tpl_starts = place_beats(rng, rr, m["r_peak"])
        if tpl_starts is None:
            continue
        r_peaks = tpl_starts + m["r_peak"]
        inside = (r_peaks >= 0) & (r_peaks < ECG_SAMPLES)
        rr_meas = np.diff(r_peaks[inside]) * DT_MS
        if rr_meas.size < 2:
            continue
        hr = 60000.0 / rr_meas.mean()
        cv = float(rr_meas.std() / rr_meas.mean())
        if _check(conds, rhythm, m, hr, cv, stress):
            break
    else:
        raise RuntimeError(f"simulator could not meet the class ranges for {conds_list}")

    if stress is None:
        signal = render_beats(rng, beat, tpl_starts, rhythm, v_dirs)
    else:
        signal = render_beats(rng, beat, tpl_starts, rhythm, v_dirs, lambda t: stress_noise(srng, t, stress), stress.gain)
    rr_mean_meas = float(rr_meas.mean())
    rr_s = rr_mean_meas / 1000.0
    truth = EcgTruth(
        conditions=conds_list, rhythm=rhythm, hr_bpm=hr, rr_ms=rr_mean_meas,
        rr_regular=cv < RR_CV_REGULAR, rr_cv=cv,
        pr_ms=m["pr_ms"], p_ms=m["p_ms"], qrs_ms=m["qrs_ms"], qt_ms=m["qt_ms"],
        qtc_bazett_ms=m["qt_ms"] / math.sqrt(rr_s), qtc_fridericia_ms=m["qt_ms"] / rr_s ** (1 / 3),
        p_axis_deg=m["p_axis_deg"], qrs_axis_deg=m["qrs_axis_deg"], t_axis_deg=m["t_axis_deg"],
        sokolow_lyon_mv=m["sokolow_lyon_mv"], st_j60_mv=m["st_j60_mv"],
        r_peaks=r_peaks[inside].tolist(), qrs_onsets=(tpl_starts[inside] + m["q_on"]).tolist(),
    )
    return signal, truth
