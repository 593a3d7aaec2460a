"""`measure_ecg`, the entry point that runs the pipeline (its result, `Measurements`, is in result.py)."""

from __future__ import annotations

import math

import numpy as np

from ..constants import LEADS
from ..thread_warnings import caught_warnings
from .atrial import atrial_waves
from .beats import aligned_beats, dominant_beats, flag_noise, nanmedian0, residual
from .detection import detect_r_peaks
from .fiducials import measure_median
from .fields import MEASUREMENT_KEYS
from .quality import (
    MIN_BEATS,
    MIN_QRS_CONSISTENCY,
    RR_CV_REGULAR,
    good_leads,
    trim_zero_padding,
)
from .result import Measurements
from .wave_input import wave_filter
from .waves import wave_edges

INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")   # III, aVR, aVL, aVF are sums of I and II
MIN_INDEPENDENT_LEADS = 2        # fewer with signal: nothing a 12-lead measurement can stand on (leads off)


def measure_ecg(x: np.ndarray, fs: float) -> Measurements:
    """Measure a (12, N) mV ECG in LEADS order sampled at fs Hz. Never raises on a bad signal: a record without
    usable signal (every lead flat, off, saturated or identical to another; no repeating QRS) gives every value None,
    the reason "no usable signal (...)" and the flag "no_signal" (`has_signal` False; `require_signal()` raises
    NoUsableSignalError)."""
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
    independent = [LEADS[i] for i in good if LEADS[i] in INDEPENDENT_LEADS]
    if len(independent) < MIN_INDEPENDENT_LEADS:
        meas.refuse("every lead is flat, off or saturated" if not good else
                    f"{len(independent)} of the 8 independent leads (I, II, V1-V6) have signal"
                    f"{': ' + ', '.join(independent) if independent else ''}; at least {MIN_INDEPENDENT_LEADS} needed")
        return meas
    if x.shape[1] < 2 * fs:
        meas.refuse(f"{x.shape[1] / fs:.1f} s of signal, under 2 s")
        return meas

    r_peaks = detect_r_peaks(x[good], fs)
    meas.r_peaks = r_peaks
    q.n_beats = int(len(r_peaks))
    if len(r_peaks) < MIN_BEATS:
        q.flags.append("too_few_beats")
        meas.mark_unmeasurable(MEASUREMENT_KEYS, f"too few beats ({len(r_peaks)} < {MIN_BEATS})")
        return meas

    rr = np.diff(r_peaks) * 1000.0 / fs                                      # (n_beats - 1,) ms
    meas.rr_ms = float(rr.mean())
    meas.hr_bpm = 60000.0 / meas.rr_ms
    rr_cv = float(rr.std() / rr.mean())
    q.rr_cv = round(rr_cv, 3)
    meas.rhythm_regular = rr_cv < RR_CV_REGULAR

    with caught_warnings():           # beats cut at the record's ends are NaN there: nan-aware stats warn, dropped
        _measure_beats(meas, x, r_peaks, good, fs)
    return meas


def _measure_beats(meas: Measurements, x: np.ndarray, r_peaks: np.ndarray, good: list[int], fs: float):
    """Median beats, their fiducials, intervals and axes (fills meas in place)."""
    q = meas.quality
    filtered = wave_filter(x, fs)                # (12, n): the median beats and the delineator see the same band
    beats, r_index, meas.r_peaks = aligned_beats(filtered, r_peaks, fs, good)   # (n_beats, 12, T)
    dominant, consistency = dominant_beats(beats, r_index, fs, good)
    if consistency < MIN_QRS_CONSISTENCY:
        meas.refuse(f"no repeating QRS: the beats' median correlation with the median QRS is {consistency:.2f}, "
                    f"under {MIN_QRS_CONSISTENCY}: noise")
        return
    meas.beat_kept = dominant
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
    waves = wave_edges(filtered, fs, meas.r_peaks, dominant, good)
    meas.beat_waves = waves.beats
    meas.atrial_waves = atrial_waves(filtered, fs, waves.beats, good)
    measure_median(meas, median, beats, resid, r_index, good, fs, rr_short, waves)
