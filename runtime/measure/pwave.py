"""The P wave on the median beats: found where the spatial magnitude before the QRS is large enough, alike in every
beat and at the same place before each QRS (a conducted P; f-waves and the previous T are not), and its edges."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .edges import outward, trapezium_start, wave_end
from .quality import Quality

P_MIN_MV = 0.03                  # a median P wave smaller than this is absent
P_EDGE_FRACTION = 0.08           # P onset/offset: also at least this share of the P peak magnitude
P_HALF_MAX_MS = 120.0            # the P onset is searched for at most this long before the P peak
P_ONSET_REACH_MS = 80.0          # ... and placed at most this long before it (a longer reach is the wave before)
P_MIN_MS = 40.0                  # a briefer "P wave" is noise or f-waves
P_MAX_MS = 180.0                 # a longer one has merged with the wave before it (LUDB: P up to ~175 ms)
P_MIN_CONSISTENCY = 0.6          # mean correlation of single-beat P waves with the median P
P_MAX_LAG_MS = 5.0               # ... and the median shift that best aligns them (a fixed PR)
P_MAX_SHIFT_MS = 40.0            # shifts tried for that alignment
P_TRAPEZIUM_REACH_MS = 40.0
P_ONSET_SMOOTH = 5                # samples: the onset's magnitude is smoothed so a count's noise does not move it


def p_onset(vcg: np.ndarray, mag: np.ndarray, peak: int, threshold: float, stop: int, n) -> int:
    """P onset, with the magnitude taken from the level just before the P wave: baseline wander left
    in a few-beat median can put the TP segment tens of uV off the PR segment, enough to drag the onset
    far back. The onset is first guessed from the upstroke (a smooth lobe rises from 0 to 30% in 1.4
    times its 30%-70% rise time, whatever its width), the level is read 10-30 ms before that guess."""
    rise30 = outward(mag, peak, 0.3 * mag[peak], -1, stop - 1)
    rise70 = outward(mag, peak, 0.7 * mag[peak], -1, stop - 1)
    guess = rise30 - int(round(1.4 * (rise70 - rise30)))
    a, b = max(guess - n(30), stop), guess - n(10)
    if b - a < n(10):
        return outward(mag, peak, threshold, -1, stop - 1)
    mag_on = np.linalg.norm(vcg - vcg[:, a:b].mean(axis=1, keepdims=True), axis=0)   # (T,)
    mag_on = np.convolve(mag_on, np.ones(P_ONSET_SMOOTH) / P_ONSET_SMOOTH, mode="same")
    onset = wave_end(mag_on, peak, max(threshold, P_EDGE_FRACTION * mag_on[peak]), stop - 1, step=-1)
    return trapezium_start(mag_on, onset, peak, stop, n(P_TRAPEZIUM_REACH_MS), n(8))


def find_p(vcg, mag, beats, median, good, p_lo: int, qrs_on: int, threshold: float, n, q: Quality
            ) -> tuple[int | None, int | None, str | None]:
    """(P onset, P offset, None), or (None, None, why not): the largest magnitude in [p_lo, QRS onset - 10 ms)
    is a P wave if it is large enough, alike in every beat and at the same place before each QRS."""
    p_hi = qrs_on - n(10)
    if p_hi - p_lo <= n(40):
        return None, None, "no room for a P wave before the QRS"
    ms = n.ms
    p_peak = p_lo + int(np.argmax(mag[p_lo:p_hi]))
    p_consistency = _consistency(beats, median, good, p_peak, n(40), qrs_on)
    q.p_consistency = round(p_consistency, 2)
    p_lag_ms = _p_lag(beats, median, good, p_peak, n(40), qrs_on, n(P_MAX_SHIFT_MS)) * ms
    q.p_lag_ms = round(p_lag_ms, 1)
    if not (mag[p_peak] >= max(P_MIN_MV, threshold) and p_consistency >= P_MIN_CONSISTENCY
            and p_lag_ms <= P_MAX_LAG_MS):
        return None, None, "no consistent P wave"
    p_threshold = max(threshold, P_EDGE_FRACTION * mag[p_peak])
    p_on = p_onset(vcg, mag, p_peak, p_threshold, max(p_lo, p_peak - n(P_HALF_MAX_MS)), n)
    p_on = max(p_on, p_peak - n(P_ONSET_REACH_MS))
    p_off = outward(mag, p_peak, p_threshold, +1, qrs_on)
    if (p_off - p_on + 1) * ms < P_MIN_MS:
        return None, None, "no P wave (a deflection too brief to be one)"
    if (p_off - p_on + 1) * ms > P_MAX_MS:
        return None, None, "P wave boundaries uncertain (it merges with the wave before it, e.g. a U wave)"
    if p_on <= p_lo + 1:
        return None, None, "P onset not found (the P wave does not leave the baseline inside its window)"
    return p_on, p_off, None


def _consistency(beats: np.ndarray, median: np.ndarray, good: list[int], center: int, half: int,
                 qrs_on: int) -> float:
    """Mean correlation of each beat's window around `center` with the median's (P wave check); the
    window stops at the QRS onset, whose beat-to-beat agreement says nothing about a P wave."""
    lo, hi = max(center - half, 0), min(center + half, qrs_on)
    tpl = median[good, lo:hi]
    tpl = (tpl - tpl.mean(axis=1, keepdims=True)).ravel()
    seg = beats[:, good, lo:hi]
    seg = seg - np.nanmean(seg, axis=2, keepdims=True)
    seg = np.where(np.isfinite(seg), seg, 0.0).reshape(len(beats), -1)
    corr = seg @ tpl / (np.linalg.norm(seg, axis=1) * np.linalg.norm(tpl) + 1e-12)
    return float(np.mean(corr))


def _p_lag(beats: np.ndarray, median: np.ndarray, good: list[int], center: int, half: int, qrs_on: int,
           max_lag: int) -> float:
    """Median |shift| (samples, up to max_lag) that best aligns each beat's P window with the median's:
    a P wave conducted to the QRS sits at the same place in every beat, f-waves anywhere."""
    lo, hi = max(center - half, max_lag), min(center + half, qrs_on)
    tpl = median[good, lo:hi]
    tpl = tpl - tpl.mean(axis=1, keepdims=True)                              # (n_good, W)
    seg = beats[:, good, lo - max_lag:hi + max_lag]
    seg = np.where(np.isfinite(seg), seg, 0.0)
    win = sliding_window_view(seg, hi - lo, axis=2)                          # (n_beats, n_good, 2 lag + 1, W)
    win = win - win.mean(axis=3, keepdims=True)
    score = np.einsum("bglw,gw->bl", win, tpl) / (np.sqrt((win ** 2).sum(axis=(1, 3))) + 1e-12)
    return float(np.median(np.abs(np.argmax(score, axis=1) - max_lag)))
