"""Flutter waves: regular atrial waves in the intervals the ventricles leave free.

Typical atrial flutter's F waves run at 240-340/min with no isoelectric baseline between them; a sinus rhythm's
TP interval is flat up to its P wave. Between one beat's T end and the next beat's P onset (its QRS onset where
the record has no consistent P wave), each of II, III, aVF and V1 is detrended and correlated with itself shifted
by one atrial cycle; pooled over every such interval long enough to hold two cycles, a lead whose atrial waves
repeat at one cycle length is a measurement of flutter waves. At 2:1 and 3:1 conduction the QRS and T cover most
of the RR interval and no interval holds two cycles: the result is then "not measured", never "absent".

The same intervals, where at least BASELINE_MIN_MS long, also give the baseline's size beat by beat (`baseline_mv`):
flat in sinus rhythm, not where flutter waves run. Measured per beat, not on the median beat, it holds at any RR:
the median averages away flutter waves that are not locked to the QRS.

The signal is the one the median beats are made from (0.5-40 Hz, mains notched); the T ends and P onsets are the
learned delineator's, per beat (`waves.BeatWaves`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..constants import LEADS

ATRIAL_LEADS = ("II", "III", "aVF", "V1")   # where flutter waves are largest (sawtooth inferior, discrete in V1)
CYCLE_MS = (170.0, 260.0)        # atrial cycle lengths looked at: 230-350 /min
AFTER_T_MS = 40.0                # the interval starts this long after the T end
BEFORE_NEXT_MS = 20.0            # ... and ends this long before the next P onset (or QRS onset)
MIN_OVERLAP_MS = 120.0           # a shift is scored only where the interval and its shifted copy overlap this long
MIN_WINDOWS = 3                  # fewer long-enough intervals: not measured
MIN_AMPLITUDE_MV = 0.05          # a lead whose intervals are smaller than this (median peak to peak) is not read
BASELINE_MIN_MS = 120.0          # an interval this long or longer is measured for a flat baseline, as it is (the
                                 # signal is high-passed at 0.5 Hz): a flutter wave's slow ramp, detrended, looked flat
                                 # over part of a cycle (4 of 31 made flutters at 3:1, training half); as it is, none


@dataclasses.dataclass(frozen=True)
class AtrialWaves:
    """The atrial activity between the beats, in the lead where it repeats best: its cycle length, how well it
    repeats (the intervals' pooled correlation with themselves one cycle later: flutter waves ~0.9 and above) and
    half a cycle later (a wave train anti-correlates there), and its size. cycle_ms None: no repeating wave
    measured (`reason` says why)."""

    cycle_ms: float | None = None
    periodicity: float | None = None     # correlation one cycle later, -1..1
    half_cycle: float | None = None      # correlation half a cycle later
    amplitude_mv: float | None = None    # median peak-to-peak over the intervals, in that lead
    lead: str | None = None
    n_intervals: int = 0                 # intervals long enough to hold two cycles
    reason: str | None = None
    baseline_mv: float | None = None     # per interval of BASELINE_MIN_MS or more, the largest peak-to-peak of II,
                                         # III, aVF, V1; the median over the intervals (None: under MIN_WINDOWS)
    baseline_ms: float | None = None     # those intervals' median length
    n_baseline: int = 0

    @property
    def rate_per_min(self) -> float | None:
        return None if self.cycle_ms is None else 60000.0 / self.cycle_ms


def atrial_waves(filtered: np.ndarray, fs: float, beats: list, good: list[int]) -> AtrialWaves:
    """(12, n) filtered mV, the per-beat waves (`waves.BeatWaves`, sample indices), the good leads -> AtrialWaves."""
    lo_lag, hi_lag = (int(round(c * fs / 1000.0)) for c in CYCLE_MS)
    min_overlap = int(round(MIN_OVERLAP_MS * fs / 1000.0))
    intervals = []
    for b, nxt in zip(beats[:-1], beats[1:]):
        if b.t is None or nxt.qrs is None:
            continue
        start = b.t[1] + int(AFTER_T_MS * fs / 1000.0)
        stop = (nxt.p[0] if nxt.p is not None else nxt.qrs[0]) - int(BEFORE_NEXT_MS * fs / 1000.0)
        intervals.append((start, stop))
    found = _repeating_wave(filtered, fs, intervals, good, lo_lag, hi_lag, min_overlap)
    return dataclasses.replace(found, **_baseline(filtered, fs, intervals, good))


def _baseline(filtered: np.ndarray, fs: float, intervals: list, good: list[int]) -> dict:
    """baseline_mv, baseline_ms, n_baseline over the intervals of BASELINE_MIN_MS or more (see AtrialWaves)."""
    leads = [LEADS.index(n) for n in ATRIAL_LEADS if LEADS.index(n) in good]
    long = [(a, b) for a, b in intervals if b - a >= BASELINE_MIN_MS * fs / 1000.0]
    if not leads or len(long) < MIN_WINDOWS:
        return {"n_baseline": len(long) if leads else 0}
    sizes = [max(float(np.ptp(filtered[k, a:b])) for k in leads) for a, b in long]
    return {"baseline_mv": float(np.median(sizes)), "baseline_ms": float(np.median([b - a for a, b in long])) *
            1000.0 / fs, "n_baseline": len(long)}


def _repeating_wave(filtered: np.ndarray, fs: float, intervals: list, good: list[int], lo_lag: int, hi_lag: int,
                   min_overlap: int) -> AtrialWaves:
    """The repeating atrial wave over the intervals long enough to hold two cycles (see AtrialWaves)."""
    windows = [(a, b) for a, b in intervals if b - a >= lo_lag + min_overlap]
    n = len(windows)
    if n < MIN_WINDOWS:
        return AtrialWaves(n_intervals=n, reason=f"{n} intervals between a T end and the next P or QRS hold two "
                           f"atrial cycles, under {MIN_WINDOWS} (a fast or 2:1 conducted rhythm leaves none)")
    lags = np.arange(lo_lag, hi_lag + 1)
    best, amp_best = None, 0.0
    for name in ATRIAL_LEADS:
        lead = LEADS.index(name)
        if lead not in good:
            continue
        parts = [_detrended(filtered[lead, a:b]) for a, b in windows]
        amp = float(np.median([np.ptp(w) for w in parts]))
        amp_best = max(amp_best, amp)
        if amp < MIN_AMPLITUDE_MV:
            continue
        pooled = _pooled(parts, lags, min_overlap)
        k = int(np.nanargmax(pooled)) if np.isfinite(pooled).any() else 0
        if not np.isfinite(pooled[k]) or k in (0, lags.size - 1):       # no peak inside the flutter range
            continue
        if best is None or pooled[k] > best.periodicity:
            half = _pooled(parts, lags[k:k + 1] // 2, min_overlap)[0]
            best = AtrialWaves(cycle_ms=float(lags[k] * 1000.0 / fs), periodicity=float(pooled[k]),
                               half_cycle=float(half), amplitude_mv=amp, lead=name, n_intervals=n)
    if best is not None:
        return best
    if amp_best < MIN_AMPLITUDE_MV:
        return AtrialWaves(amplitude_mv=amp_best, n_intervals=n, reason=f"atrial activity under "
                           f"{MIN_AMPLITUDE_MV} mV peak to peak between the beats in II, III, aVF, V1")
    return AtrialWaves(amplitude_mv=amp_best, n_intervals=n, reason="no atrial wave repeating at "
                       f"{60000 / CYCLE_MS[1]:.0f}-{60000 / CYCLE_MS[0]:.0f}/min between the beats")


def _pooled(parts: list[np.ndarray], lags: np.ndarray, min_overlap: int) -> np.ndarray:
    """For each lag, the intervals' correlation with themselves `lag` samples later, weighted by the overlap (nan
    where no interval overlaps its shifted copy by min_overlap)."""
    score, weight = np.zeros(lags.size), np.zeros(lags.size)
    for w in parts:
        r, n = _lagged_pearson(w, lags)
        use = n >= min_overlap
        score += np.where(use, r * n, 0.0)
        weight += np.where(use, n, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, score / weight, np.nan)


def _lagged_pearson(w: np.ndarray, lags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's r of w[:n] with w[lag:] (n = len(w) - lag) for every lag at once, from running sums and one
    autocorrelation, and n; r is 0 where either part is flat."""
    size = w.size
    lags = np.minimum(lags, size - 1)
    n = (size - lags).astype(np.float64)
    cs = np.concatenate(([0.0], np.cumsum(w)))
    cs2 = np.concatenate(([0.0], np.cumsum(w * w)))
    cross = np.correlate(w, w, "full")[size - 1:][lags]                  # sum of w[i] * w[i + lag]
    sa, sb = cs[size - lags], cs[size] - cs[lags]
    va = cs2[size - lags] - sa * sa / n
    vb = cs2[size] - cs2[lags] - sb * sb / n
    den = np.sqrt(np.maximum(va, 0.0) * np.maximum(vb, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12, (cross - sa * sb / n) / den, 0.0)
    return r, n


def _detrended(w: np.ndarray) -> np.ndarray:
    t = np.arange(w.size, dtype=np.float64)
    slope, icpt = np.polyfit(t, w, 1)
    return w - (slope * t + icpt)
