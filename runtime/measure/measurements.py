"""The `Measurements` of one ECG and `measure_ecg`, the entry point that runs the pipeline."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from ..constants import LEADS
from .beats import aligned_beats, dominant_beats, flag_noise, nanmedian0, residual
from .detection import bandpass, detect_r_peaks, notch_mains
from .fiducials import measure_median
from .fields import FIELDS, MEASUREMENT_KEYS
from .quality import MIN_BEATS, RR_CV_REGULAR, Quality, good_leads, trim_zero_padding

MEASURE_BAND_HZ = (0.5, 40.0)    # median beats: wander and mains hum out, wave edges kept


@dataclasses.dataclass
class Measurements:
    """Global measurements of one ECG; None where not measurable (reason in quality.reasons)."""

    hr_bpm: float | None = None           # ventricular rate, 60000 / mean RR
    rr_ms: float | None = None            # mean RR interval
    pr_ms: float | None = None            # P onset -> QRS onset
    p_ms: float | None = None             # P onset -> P offset
    qrs_ms: float | None = None           # QRS onset -> QRS offset
    qt_ms: float | None = None            # QRS onset -> T end
    qtc_bazett_ms: float | None = None    # QT / sqrt(RR s)
    qtc_fridericia_ms: float | None = None  # QT / cbrt(RR s)
    p_axis_deg: float | None = None       # frontal axes: atan2 of net areas in I and aVF
    qrs_axis_deg: float | None = None
    t_axis_deg: float | None = None
    rhythm_regular: bool | None = None    # RR coefficient of variation below RR_CV_REGULAR
    quality: Quality = dataclasses.field(default_factory=Quality)
    # For drawing and checks, not in the JSON: per-lead median beats and fiducial sample indices.
    fs: float = 0.0
    median_beats: np.ndarray | None = None  # (12, T) mV, isoelectric level at 0
    fiducials: dict = dataclasses.field(default_factory=dict)   # name -> index into median_beats
    r_peaks: np.ndarray | None = None       # (n_beats,) sample indices in the input record

    def to_dict(self) -> dict:
        """JSON-ready: the measurement keys, `rhythm_regular` and `quality`; numbers rounded."""
        out = {}
        for f in FIELDS:
            value = getattr(self, f.key)
            out[f.key] = None if value is None else round(float(value), f.decimals)
        out["rhythm_regular"] = self.rhythm_regular
        out["quality"] = self.quality.to_dict()
        return out

    def _not_measurable(self, keys, reason: str):
        for key in keys:
            setattr(self, key, None)
            self.quality.reasons.setdefault(key, reason)


def measure_ecg(x: np.ndarray, fs: float) -> Measurements:
    """Measure a (12, N) mV ECG in LEADS order sampled at fs Hz. Never raises on a bad signal."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise ValueError(f"expected a (12, N) signal in LEADS order, got shape {x.shape}")
    if not (math.isfinite(fs) and fs >= 100):
        raise ValueError(f"fs must be at least 100 Hz, got {fs!r}")
    meas = Measurements(fs=float(fs))
    q = meas.quality
    x = np.where(np.isfinite(x), x, 0.0)
    x = trim_zero_padding(x, q)                                             # (12, n)

    good = good_leads(x, q)
    if x.shape[1] < 2 * fs or not good:
        meas._not_measurable(MEASUREMENT_KEYS, "no usable signal (all leads off or record too short)")
        q.flags.append("no_signal")
        return meas

    r_peaks = detect_r_peaks(x[good], fs)
    meas.r_peaks = r_peaks
    q.n_beats = int(len(r_peaks))
    if len(r_peaks) < MIN_BEATS:
        q.flags.append("too_few_beats")
        meas._not_measurable(MEASUREMENT_KEYS, f"too few beats ({len(r_peaks)} < {MIN_BEATS})")
        return meas

    rr = np.diff(r_peaks) * 1000.0 / fs                                      # (n_beats - 1,) ms
    meas.rr_ms = float(rr.mean())
    meas.hr_bpm = 60000.0 / meas.rr_ms
    rr_cv = float(rr.std() / rr.mean())
    q.rr_cv = round(rr_cv, 3)
    meas.rhythm_regular = rr_cv < RR_CV_REGULAR

    with warnings.catch_warnings():   # beats cut at the record's ends are NaN there: nan-aware stats
        warnings.simplefilter("ignore", RuntimeWarning)
        _measure_beats(meas, x, r_peaks, good, fs)
    return meas


def _measure_beats(meas: Measurements, x: np.ndarray, r_peaks: np.ndarray, good: list[int], fs: float):
    """Median beats, their fiducials, intervals and axes (fills meas in place)."""
    q = meas.quality
    filtered = bandpass(notch_mains(x, fs), fs, MEASURE_BAND_HZ)            # (12, n)
    beats, r_index, meas.r_peaks = aligned_beats(filtered, r_peaks, fs, good)   # (n_beats, 12, T)
    dominant = dominant_beats(beats, r_index, fs, good)
    q.n_excluded_beats = int((~dominant).sum())
    if (~dominant).any():
        q.flags.append("ectopic_beats")
    beats = beats[dominant]
    median = nanmedian0(beats)                                               # (12, T)
    median = np.where(np.isfinite(median), median, 0.0)
    resid = residual(beats, median, r_index, fs, meas.rr_ms)                            # (n_beats, 12, T')
    flag_noise(resid, good, q)
    rr_before = np.diff(meas.r_peaks)[dominant[1:]]                         # RR ending at each kept beat
    rr_short = int(np.percentile(rr_before, 10)) if rr_before.size else int(meas.rr_ms * fs / 1000)
    measure_median(meas, median, beats, resid, r_index, good, fs, rr_short)
