"""Deterministic ECG measurements, made before any interpretation (as GE 12SL, Philips DXL, Glasgow do).

GEM's value is grounding: each diagnosis tied to measurable evidence. This module measures the signal
itself, with numpy/scipy only, so the runtime can put the numbers beside the model's text and flag any
number in the text that disagrees (see `grounding.py`).

    meas = measure_ecg(x, fs=500)        # x: (12, N) mV in LEADS order
    meas.to_dict()                       # {"hr_bpm": 72.1, "pr_ms": 164.0, ..., "quality": {...}}

Pipeline:
1. lead check (flat / off), band-pass spatial energy over all good leads, adaptive threshold with a
   refractory period and search-back -> R peaks; RR series and its regularity;
2. beats aligned by cross-correlation, ectopic beats (unlike the dominant QRS) left out, one median beat
   per lead;
3. GLOBAL fiducials from the spatial magnitude of the median beats (a vectorcardiogram from the 8
   independent leads, Kors' regression), levels taken from the PR segment (the last quiet window before
   the QRS): each wave's onset/offset is where the magnitude, searched outward from the wave's peak,
   falls below a threshold above the noise floor; QRS offset also ends where the spatial velocity drops
   below the QRS's and the isoelectric window's own motion (so ST elevation and f-waves do not stretch
   the QRS), and goes on through a brief return to baseline when a fast lobe follows (RBBB's R');
   a P wave must look alike and sit at the same place in every beat (AF gives none), and its onset is
   measured from the level just before it;
4. intervals from the fiducials, frontal axes from the net areas of I and aVF.

A measurement that cannot be made is None with its reason in `quality["reasons"]`, never a guess.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, find_peaks, sosfiltfilt

from .constants import LEADS

# --- Filters and detection ---------------------------------------------------------------------
DETECT_BAND_HZ = (5.0, 20.0)     # QRS energy band: rejects wander, T waves and most muscle noise
MEASURE_BAND_HZ = (0.5, 40.0)    # median beats: wander and mains hum out, wave edges kept
INTEGRATION_MS = 80.0            # moving window over the squared spatial velocity
REFRACTORY_MS = 200.0            # no second QRS this soon (a rate of 300 bpm)
T_WAVE_WINDOW_MS = 360.0         # a candidate this close with half the slope is a T wave
SEARCH_BACK_RR = 1.66            # a gap this many mean RRs long is searched again at half threshold
ALIGN_SHIFT_MS = 16.0            # cross-correlation refinement of each beat's fiducial
ECTOPIC_CORR = 0.80              # QRS correlation with the dominant beat below this: left out

# --- Median beat window and fiducials ----------------------------------------------------------
BEAT_BEFORE_MS = 500.0           # from the R peak back: PR up to ~320 ms plus the P wave
BEAT_AFTER_MS = 800.0            # from the R peak on: a QT up to ~700 ms
WAVE_THRESHOLD_MV = 0.020        # spatial magnitude above the isoelectric level marks a wave
NOISE_FACTOR = 2.0               # the threshold is at least this many times the median beat's noise
QRS_VELOCITY_FRACTION = 0.04     # "not moving": spatial velocity below this share of the QRS peak's
QRS_GAP_MS = 8.0                 # magnitude below threshold this long: the QRS has ended
QRS_SLOW_MS = 10.0               # the QRS ends where the signal has not moved for this long
QRS_RESUME_MS = 30.0             # a fast lobe starting this soon after the QRS dips out still belongs to it
QRS_RESUME_VELOCITY = 0.10       # "fast": spatial velocity at least this share of the QRS peak's
ISO_SEARCH_MS = 130.0            # the isoelectric (PR segment) window lies this close before the QRS
ISO_QUIET_RATIO = 2.0            # ... and is the latest window at most this much busier than the quietest
P_MIN_MV = 0.04                  # a median P wave smaller than this is absent
P_EDGE_FRACTION = 0.08           # P onset/offset: also at least this share of the P peak magnitude
P_HALF_MAX_MS = 120.0            # P onset at most this long before the P peak
P_MIN_MS = 40.0                  # a briefer "P wave" is noise or f-waves
P_MIN_CONSISTENCY = 0.6          # mean correlation of single-beat P waves with the median P
P_MAX_LAG_MS = 3.0               # ... and the median shift that best aligns them (a fixed PR)
P_MAX_SHIFT_MS = 40.0            # shifts tried for that alignment

# --- Quality -----------------------------------------------------------------------------------
FLAT_MV = 0.01                   # peak-to-peak below this over the record: lead off or flat
NOISE_RMS_MV = 0.10              # beat-to-median residual above this: noisy lead
MIN_BEATS = 3
RR_CV_REGULAR = 0.08             # RR coefficient of variation below this: regular rhythm

LIMB = {name: LEADS.index(name) for name in ("I", "II", "aVF")}
INDEPENDENT = [LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
# Kors' regression from (I, II, V1..V6) to the Frank X, Y, Z leads (Kors et al., Eur Heart J 1990).
KORS = np.array([
    [0.38, -0.07, -0.13, 0.05, -0.01, 0.14, 0.06, 0.54],
    [-0.07, 0.93, 0.06, -0.02, -0.05, 0.06, -0.17, 0.13],
    [0.11, -0.23, -0.43, -0.06, -0.14, -0.20, -0.11, 0.31],
])
SQRT3_2 = math.sqrt(3.0) / 2.0   # aVF = (sqrt 3 / 2) * the inferior component (Einthoven triangle)

MEASUREMENT_KEYS = ("hr_bpm", "rr_ms", "pr_ms", "p_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms",
                    "qtc_fridericia_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg")


@dataclasses.dataclass
class Measurements:
    """Global measurements of one ECG; None where not measurable (reason in quality["reasons"])."""

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
    quality: dict = dataclasses.field(default_factory=lambda: {"flags": [], "reasons": {}})
    # For drawing and checks, not in the JSON: per-lead median beats and fiducial sample indices.
    fs: float = 0.0
    median_beats: np.ndarray | None = None  # (12, T) mV, isoelectric level at 0
    fiducials: dict = dataclasses.field(default_factory=dict)   # name -> index into median_beats
    r_peaks: np.ndarray | None = None       # (n_beats,) sample indices in the input record

    def to_dict(self) -> dict:
        """JSON-ready: the measurement keys, `rhythm_regular` and `quality`; numbers rounded."""
        out = {}
        for key in MEASUREMENT_KEYS:
            value = getattr(self, key)
            out[key] = None if value is None else round(float(value), 1 if key == "hr_bpm" else 0)
        out["rhythm_regular"] = self.rhythm_regular
        out["quality"] = self.quality
        return out

    def _not_measurable(self, keys, reason: str):
        for key in keys:
            setattr(self, key, None)
            self.quality["reasons"].setdefault(key, reason)


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
    x = _trim_zero_padding(x, q)                                             # (12, n)

    good = _good_leads(x, q)
    if x.shape[1] < 2 * fs or not good:
        meas._not_measurable(MEASUREMENT_KEYS, "no usable signal (all leads off or record too short)")
        q["flags"].append("no_signal")
        return meas

    r_peaks = _detect_r_peaks(x[good], fs)
    meas.r_peaks = r_peaks
    q["n_beats"] = int(len(r_peaks))
    if len(r_peaks) < MIN_BEATS:
        q["flags"].append("too_few_beats")
        meas._not_measurable(MEASUREMENT_KEYS, f"too few beats ({len(r_peaks)} < {MIN_BEATS})")
        return meas

    rr = np.diff(r_peaks) * 1000.0 / fs                                      # (n_beats - 1,) ms
    meas.rr_ms = float(rr.mean())
    meas.hr_bpm = 60000.0 / meas.rr_ms
    rr_cv = float(rr.std() / rr.mean())
    q["rr_cv"] = round(rr_cv, 3)
    meas.rhythm_regular = rr_cv < RR_CV_REGULAR

    with warnings.catch_warnings():   # beats cut at the record's ends are NaN there: nan-aware stats
        warnings.simplefilter("ignore", RuntimeWarning)
        _measure_beats(meas, x, r_peaks, good, fs)
    return meas


def _measure_beats(meas: Measurements, x: np.ndarray, r_peaks: np.ndarray, good: list[int], fs: float):
    """Median beats, their fiducials, intervals and axes (fills meas in place)."""
    q = meas.quality
    filtered = _bandpass(x, fs, MEASURE_BAND_HZ)                             # (12, n)
    beats, r_index, meas.r_peaks = _aligned_beats(filtered, r_peaks, fs, good)   # (n_beats, 12, T)
    dominant = _dominant_beats(beats, r_index, fs, good)
    q["n_excluded_beats"] = int((~dominant).sum())
    if (~dominant).any():
        q["flags"].append("ectopic_beats")
    beats = beats[dominant]
    median = nanmedian0(beats)                                               # (12, T)
    median = np.where(np.isfinite(median), median, 0.0)
    resid = _residual(beats, median, r_index, fs, meas.rr_ms)                            # (n_beats, 12, T')
    _flag_noise(resid, good, q)
    rr_before = np.diff(meas.r_peaks)[dominant[1:]]                         # RR ending at each kept beat
    rr_short = int(np.percentile(rr_before, 10)) if rr_before.size else int(meas.rr_ms * fs / 1000)
    _measure_median(meas, median, beats, resid, r_index, good, fs, rr_short)


# --- Signal checks and filters ------------------------------------------------------------------

def _trim_zero_padding(x: np.ndarray, quality: dict) -> np.ndarray:
    """Drop a tail where every lead is exactly 0 (preprocess pads short records with zeros)."""
    active = np.flatnonzero(np.any(x != 0.0, axis=0))
    end = int(active[-1]) + 1 if active.size else 0
    if end < x.shape[1]:
        quality["flags"].append("zero_padded")
        quality["zero_padded_samples"] = int(x.shape[1] - end)
    return x[:, :end]


def _good_leads(x: np.ndarray, quality: dict) -> list[int]:
    """Leads with signal; flat or disconnected ones are listed in quality["leads_off"]."""
    ptp = np.ptp(x, axis=1) if x.shape[1] else np.zeros(len(LEADS))
    off = [LEADS[i] for i in range(len(LEADS)) if ptp[i] < FLAT_MV]
    if off:
        quality["flags"].append("lead_off")
        quality["leads_off"] = off
    return [i for i in range(len(LEADS)) if LEADS[i] not in off]


def _bandpass(x: np.ndarray, fs: float, band: tuple[float, float]) -> np.ndarray:
    high = min(band[1], 0.45 * fs)
    sos = butter(2, [band[0], high], btype="band", fs=fs, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


# --- R peaks ------------------------------------------------------------------------------------

def _detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices from all good leads (n_good, n): spatial QRS energy, adaptive threshold."""
    bp = _bandpass(x, fs, DETECT_BAND_HZ)
    scale = np.percentile(np.abs(bp), 99, axis=1, keepdims=True) + 1e-6
    velocity2 = (np.diff(bp / scale, axis=1, prepend=bp[:, :1] / scale) ** 2).sum(axis=0)   # (n,)
    width = max(1, int(INTEGRATION_MS * fs / 1000))
    energy = np.convolve(velocity2, np.ones(width) / width, mode="same")
    refractory = int(REFRACTORY_MS * fs / 1000)
    cand, props = find_peaks(energy, distance=refractory, height=0.0)
    if cand.size == 0:
        return cand
    heights = props["peak_heights"]
    slopes = np.array([velocity2[max(c - width, 0):c + width].max() for c in cand])

    signal_level = np.percentile(heights, 90)
    noise_level = np.percentile(heights, 10) if cand.size > 10 else 0.1 * signal_level
    accepted: list[int] = []                                     # indices into cand
    for k, h in enumerate(heights):
        threshold = noise_level + 0.25 * (signal_level - noise_level)
        is_qrs = h > threshold
        if is_qrs and accepted:
            last = accepted[-1]
            gap = (cand[k] - cand[last]) * 1000 / fs
            if gap < T_WAVE_WINDOW_MS and slopes[k] < 0.5 * slopes[last]:
                is_qrs = False                                   # a T wave, not a QRS
        if is_qrs:
            _search_back(cand, heights, accepted, k, threshold, fs)
            accepted.append(k)
            signal_level = 0.125 * h + 0.875 * signal_level
        else:
            noise_level = 0.125 * h + 0.875 * noise_level
    peaks = cand[accepted]
    # the fiducial: the largest spatial velocity within the integration window
    return np.array([max(p - width, 0) + int(np.argmax(velocity2[max(p - width, 0):p + width]))
                     for p in peaks], dtype=np.int64)


def _search_back(cand, heights, accepted, k, threshold, fs):
    """Before accepting candidate k: a long gap since the last QRS is searched at half threshold."""
    if len(accepted) < 2:
        return
    rr_mean = np.diff(cand[accepted[-8:]]).mean()
    last = accepted[-1]
    if cand[k] - cand[last] <= SEARCH_BACK_RR * rr_mean:
        return
    min_gap = REFRACTORY_MS * fs / 1000
    inside = [j for j in range(last + 1, k) if heights[j] > 0.5 * threshold
              and cand[j] - cand[last] > min_gap and cand[k] - cand[j] > min_gap]
    if inside:
        accepted.append(max(inside, key=lambda j: heights[j]))


# --- Median beat --------------------------------------------------------------------------------

def _aligned_beats(x: np.ndarray, r_peaks: np.ndarray, fs: float, good: list[int]
                   ) -> tuple[np.ndarray, int, np.ndarray]:
    """Beats cut around each R peak, realigned by cross-correlation; NaN outside the record.

    Returns (n_beats, 12, T), the R index inside a beat, and the realigned R peaks."""
    before = int(BEAT_BEFORE_MS * fs / 1000)
    rr = np.median(np.diff(r_peaks))
    after = max(int(BEAT_AFTER_MS * fs / 1000), int(rr + 0.1 * fs))   # through the next PR segment
    shift = int(ALIGN_SHIFT_MS * fs / 1000)
    pad = before + after + shift
    padded = np.pad(x, ((0, 0), (pad, pad)), constant_values=np.nan)       # (12, n + 2 pad)

    def cut(starts):
        idx = np.asarray(starts)[:, None] + np.arange(before + after)[None, :] + pad
        return np.transpose(padded[:, idx], (1, 0, 2))                      # (n_beats, 12, T)

    beats = cut(r_peaks - before)
    qrs = slice(before - int(0.06 * fs), before + int(0.08 * fs))
    template = nanmedian0(beats[:, good, qrs])                                # (n_good, W)
    # score every shift of every beat at once: windows (n_beats, n_shifts, W) of the good leads
    starts = np.asarray(r_peaks)[:, None] + np.arange(-shift, shift + 1)[None, :] - before + pad + qrs.start
    windows = padded[good][:, starts[:, :, None] + np.arange(qrs.stop - qrs.start)]   # (n_good, n_beats, S, W)
    scores = np.nansum(windows * template[:, None, None, :], axis=(0, 3))           # (n_beats, S)
    refined = np.asarray(r_peaks, dtype=np.int64) + np.argmax(scores, axis=1) - shift
    return cut(refined - before), before, refined


def nanmedian0(a: np.ndarray) -> np.ndarray:
    """np.nanmedian(a, axis=0), without the masked-array path numpy takes for small arrays (~6 ms here).
    NaN where a column has no finite value."""
    s = np.sort(a, axis=0)                                                   # NaN sort last
    n = np.sum(~np.isnan(a), axis=0)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[None], axis=0)[0]
    mid = np.where(n % 2 == 1, lo, (lo + hi) / 2)
    return np.where(n > 0, mid, np.nan).astype(a.dtype, copy=False)


def _dominant_beats(beats: np.ndarray, r_index: int, fs: float, good: list[int]) -> np.ndarray:
    """Boolean mask of beats whose QRS correlates with the median QRS (ectopic beats are not)."""
    qrs = slice(r_index - int(0.06 * fs), r_index + int(0.08 * fs))
    seg = beats[:, good, qrs].reshape(len(beats), -1)                        # (n_beats, n_good * W)
    seg = np.where(np.isfinite(seg), seg, 0.0)
    template = np.median(seg, axis=0)
    seg_c = seg - seg.mean(axis=1, keepdims=True)
    tpl_c = template - template.mean()
    corr = seg_c @ tpl_c / (np.linalg.norm(seg_c, axis=1) * np.linalg.norm(tpl_c) + 1e-12)
    mask = corr >= ECTOPIC_CORR
    return mask if mask.sum() >= MIN_BEATS else np.ones(len(beats), dtype=bool)


def _residual(beats: np.ndarray, median: np.ndarray, r: int, fs: float, rr_ms: float) -> np.ndarray:
    """Beat-to-median residual within the beat but outside its QRS, each beat's offset removed:
    noise. (n, 12, T')"""
    rr = rr_ms * fs / 1000.0
    outside = np.zeros(median.shape[1], dtype=bool)
    outside[max(r - int(0.45 * rr), 0): r + int(0.55 * rr)] = True
    outside[max(r - int(0.10 * fs), 0): r + int(0.12 * fs)] = False   # QRS amplitude varies beat to beat
    resid = beats[:, :, outside] - median[None, :, outside]
    resid = resid - np.nanmean(resid, axis=2, keepdims=True)
    return np.where(np.isfinite(resid), resid, 0.0)


def _flag_noise(resid: np.ndarray, good: list[int], quality: dict) -> None:
    """Per-lead RMS of the beat-to-median residual; leads over NOISE_RMS_MV are noisy."""
    rms = np.sqrt((resid ** 2).mean(axis=(0, 2)))                            # (12,)
    quality["noise_rms_mv"] = {LEADS[i]: round(float(rms[i]), 3) for i in good}
    noisy = [LEADS[i] for i in good if rms[i] > NOISE_RMS_MV]
    if noisy:
        quality["flags"].append("noise")
        quality["noisy_leads"] = noisy


# --- Global fiducials ---------------------------------------------------------------------------

def _spatial(median: np.ndarray, good: list[int]) -> np.ndarray:
    """A 3-lead vectorcardiogram (3, T) from the 8 independent leads; plain leads if any is off."""
    if all(i in good for i in INDEPENDENT):
        return KORS @ median[INDEPENDENT]
    use = [i for i in INDEPENDENT if i in good] or good
    return median[use] / math.sqrt(len(use) / 3.0)


def _outward(mag: np.ndarray, peak: int, threshold: float, step: int, stop: int) -> int:
    """The last index, going from peak in direction step, where mag is still above threshold."""
    i = peak
    while i + step != stop and 0 <= i + step < len(mag) and mag[i + step] >= threshold:
        i += step
    return i


def _baseline(median: np.ndarray, iso: int, win: int, rr: int | None) -> np.ndarray:
    """Per-lead isoelectric line (12, T): the level at [iso, iso + win), sloped to the next beat's."""
    start = median[:, iso:iso + win].mean(axis=1, keepdims=True)              # (12, 1)
    if rr is None or iso + rr + win > median.shape[1]:
        return start
    end = median[:, iso + rr:iso + rr + win].mean(axis=1, keepdims=True)
    frac = (np.arange(median.shape[1]) - iso)[None, :] / rr                  # (1, T)
    return start + (end - start) * frac


def _p_onset(vcg: np.ndarray, mag: np.ndarray, peak: int, threshold: float, stop: int, n) -> int:
    """P onset, with the magnitude taken from the level just before the P wave: baseline wander left
    in a few-beat median can put the TP segment tens of uV off the PR segment, enough to drag the onset
    far back. The onset is first guessed from the upstroke (a smooth lobe rises from 0 to 30% in 1.4
    times its 30%-70% rise time, whatever its width), the level is read 10-30 ms before that guess."""
    rise30 = _outward(mag, peak, 0.3 * mag[peak], -1, stop - 1)
    rise70 = _outward(mag, peak, 0.7 * mag[peak], -1, stop - 1)
    guess = rise30 - int(round(1.4 * (rise70 - rise30)))
    a, b = max(guess - n(30), stop), guess - n(10)
    if b - a < n(10):
        return _outward(mag, peak, threshold, -1, stop - 1)
    mag_on = np.linalg.norm(vcg - vcg[:, a:b].mean(axis=1, keepdims=True), axis=0)   # (T,)
    return _outward(mag_on, peak, max(threshold, P_EDGE_FRACTION * mag_on[peak]), -1, stop - 1)


def _isoelectric_window(velocity: np.ndarray, qrs_peak: int, win: int, search: int) -> int:
    """Start of the PR-segment window: the LAST quiet `win` samples before the QRS starts to move.

    The quietest window alone can be the flat top of a long P wave, which would shift every level
    by the P amplitude; the PR segment lies after it, so of the windows nearly as quiet as the
    quietest, the one nearest the QRS wins."""
    # smoothed over `win // 2` samples: velocity also vanishes for a moment at the top of a lobe
    smooth = np.convolve(velocity, np.ones(max(win // 2, 1)) / max(win // 2, 1), mode="same")
    moving = smooth >= QRS_VELOCITY_FRACTION * velocity[qrs_peak]
    onset = qrs_peak
    while onset > 0 and moving[onset - 1]:
        onset -= 1                                            # first sample of the moving QRS
    lo = max(onset - search, 0)
    if onset - lo <= win:
        return lo
    quiet = np.convolve(velocity[lo:onset], np.ones(win) / win, mode="valid")   # window ends <= onset
    near_min = np.flatnonzero(quiet <= ISO_QUIET_RATIO * quiet.min())
    return lo + int(near_min[-1])


def _wave_end(mag: np.ndarray, peak: int, threshold: float, stop: int) -> int:
    """Last index after peak still in the wave: before magnitude falls below threshold, or the trough
    where magnitude rises again by more than a threshold and 15% of the peak (the next wave)."""
    rise = max(threshold, 0.15 * mag[peak])
    trough = peak
    for i in range(peak + 1, stop):
        if mag[i] < threshold:
            return i - 1
        if mag[i] < mag[trough]:
            trough = i
        elif mag[i] > mag[trough] + rise:
            return trough
    return trough


def _measure_median(meas: Measurements, median: np.ndarray, beats: np.ndarray, resid: np.ndarray, r: int,
                    good: list[int], fs: float, rr_short: int) -> None:
    """Fiducials on the median beats, then intervals and axes (fills meas in place). rr_short: a short
    RR (10th percentile, samples) ending at a kept beat."""
    q = meas.quality
    ms = 1000.0 / fs
    n = lambda millis: int(round(millis / ms))                                # noqa: E731
    rr = int(round(meas.rr_ms / ms))

    # Isoelectric level: the last quiet 20 ms before the QRS (PR segment), per lead; with a regular
    # rhythm, a straight line from it to the same point of the next beat (the TP level can differ).
    vcg = _spatial(median, good)                                             # (3, T)
    velocity = np.linalg.norm(np.gradient(vcg, axis=1), axis=0)              # (T,) mV/sample
    qrs_peak_v = r - n(60) + int(np.argmax(velocity[r - n(60): r + n(60)]))
    win = n(20)
    iso = _isoelectric_window(velocity, qrs_peak_v, win, n(ISO_SEARCH_MS))
    median = median - _baseline(median, iso, win, rr if meas.rhythm_regular else None)
    meas.median_beats = median.astype(np.float32)
    vcg = _spatial(median, good)
    mag = np.linalg.norm(vcg, axis=0)                                        # (T,) mV

    # Noise floor of the median beat's magnitude, from the beat-to-beat residual.
    resid_vcg = np.stack([_spatial(b, good) for b in resid])                 # (n_beats, 3, T')
    floor = float(np.sqrt((resid_vcg ** 2).mean(axis=(0, 2)).sum() / len(beats)) * 1.25)
    threshold = max(WAVE_THRESHOLD_MV, NOISE_FACTOR * floor)
    q["wave_threshold_mv"] = round(threshold, 3)

    # QRS: outward from the velocity peak until the magnitude stays below threshold for QRS_GAP_MS
    # (a terminal lobe turning round, as in RBBB, dips briefly); the offset also stops where the signal
    # has not moved for QRS_SLOW_MS (an elevated ST segment is large but slow).
    qrs_lo, qrs_hi = max(r - n(150), 0), min(r + n(200), len(mag) - 1)
    gap = max(n(QRS_GAP_MS), 1)
    low = (mag < threshold).astype(float)
    low_run = np.convolve(low, np.ones(gap), mode="full")[gap - 1:] >= gap   # low for gap samples from i
    low_run_back = np.convolve(low, np.ones(gap), mode="full")[:len(low)] >= gap  # ... up to i
    before = np.flatnonzero(low_run_back[qrs_lo:qrs_peak_v])
    qrs_on = qrs_lo + int(before[-1]) + 1 if before.size else qrs_lo
    run = n(QRS_SLOW_MS)
    # "Not moving" is relative to the QRS and, where f-waves or noise keep the median beat moving
    # even in its isoelectric window, to that motion.
    noise_v = float(velocity[iso:iso + win].mean())
    slow = (velocity < max(QRS_VELOCITY_FRACTION * velocity[qrs_peak_v], NOISE_FACTOR * noise_v)
            ).astype(float)
    slow_run = np.convolve(slow, np.ones(run), mode="full")[run - 1:] >= run
    start = qrs_peak_v
    while True:
        stop = np.flatnonzero((low_run | slow_run)[start:qrs_hi])
        qrs_off = start + int(stop[0]) - 1 if stop.size else qrs_hi
        if not stop.size or not low_run[qrs_off + 1]:
            break
        # Back to baseline, but a fast, large lobe follows within QRS_RESUME_MS: a late activation
        # front (RBBB's R') belongs to the QRS; the T wave starts later and rises slowly.
        ahead = slice(qrs_off + 1, min(qrs_off + 1 + n(QRS_RESUME_MS), qrs_hi))
        fast = np.flatnonzero((velocity[ahead] >= QRS_RESUME_VELOCITY * velocity[qrs_peak_v])
                              & (mag[ahead] >= 2.0 * threshold))
        if not fast.size:
            break
        start = ahead.start + int(fast[0])
    if stop.size and not low_run[qrs_off + 1]:
        # Stopped on a slow, large plateau (ST elevation): the J point is the dip before it, if any.
        dip = qrs_peak_v + int(np.argmin(mag[qrs_peak_v:qrs_off + 1]))
        if mag[dip] < 0.5 * mag[qrs_off + 1]:
            qrs_off = dip

    # T wave: the largest magnitude after the QRS; its end is where magnitude falls below threshold,
    # or the trough before the next P wave where they merge (high rates).
    t_lo, t_hi = qrs_off + n(40), min(qrs_on + max(rr - n(80), n(200)), len(mag) - 1)
    t_end = None
    if t_hi - t_lo > n(40):
        t_peak = t_lo + int(np.argmax(mag[t_lo:t_hi]))
        if mag[t_peak] >= threshold:
            # measured from the TP level where there is a TP segment: atrial repolarisation often
            # leaves the PR segment lower than the TP segment
            tp_lo, tp_hi, win_tp = t_peak + n(100), qrs_on + rr - n(200), n(40)
            mag_t = mag
            if tp_hi - tp_lo > win_tp:
                quiet_tp = np.convolve(velocity[tp_lo:tp_hi], np.ones(win_tp), mode="valid")
                at = tp_lo + int(np.argmin(quiet_tp))
                tp_level = vcg[:, at:at + win_tp].mean(axis=1, keepdims=True)   # (3, 1)
                mag_t = np.linalg.norm(vcg - tp_level, axis=0)                   # (T,)
            t_end = _wave_end(mag_t, t_peak, threshold, t_hi)

    # P wave: the largest magnitude between the previous T end and the QRS onset.
    p_on = p_off = None
    p_hi = qrs_on - n(10)
    # The search starts after the previous T even in the shortest cycles: in AF the previous beat's
    # T wave lands at a different place in every beat and must not pass for a P wave.
    p_lo = max(qrs_on - n(350), 0, (t_end - rr_short + n(10)) if t_end is not None else 0)
    p_reason = None
    if p_hi - p_lo > n(40):
        p_peak = p_lo + int(np.argmax(mag[p_lo:p_hi]))
        p_consistency = _consistency(beats, median, good, p_peak, n(40), qrs_on)
        q["p_consistency"] = round(p_consistency, 2)
        p_lag_ms = _p_lag(beats, median, good, p_peak, n(40), qrs_on, n(P_MAX_SHIFT_MS)) * ms
        q["p_lag_ms"] = round(p_lag_ms, 1)
        if (mag[p_peak] >= max(P_MIN_MV, threshold) and p_consistency >= P_MIN_CONSISTENCY
                and p_lag_ms <= P_MAX_LAG_MS):
            p_threshold = max(threshold, P_EDGE_FRACTION * mag[p_peak])
            p_on = _p_onset(vcg, mag, p_peak, p_threshold, max(p_lo, p_peak - n(P_HALF_MAX_MS)), n)
            p_off = _outward(mag, p_peak, p_threshold, +1, qrs_on)
            if (p_off - p_on + 1) * ms < P_MIN_MS:
                p_on = p_off = None
                p_reason = "no P wave (a deflection too brief to be one)"
        else:
            p_reason = "no consistent P wave"
    else:
        p_reason = "no room for a P wave before the QRS"

    meas.fiducials = {"r": r, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_end": t_end,
                      "p_on": p_on, "p_off": p_off, "isoelectric": iso}
    meas.qrs_ms = (qrs_off - qrs_on + 1) * ms
    meas.qrs_axis_deg = _axis(median, qrs_on, qrs_off, good, q, "qrs_axis_deg")
    if t_end is None:
        meas._not_measurable(("qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "t_axis_deg"),
                             "T wave end not found")
    else:
        meas.qt_ms = (t_end - qrs_on + 1) * ms
        rr_s = meas.rr_ms / 1000.0
        meas.qtc_bazett_ms = meas.qt_ms / math.sqrt(rr_s)
        meas.qtc_fridericia_ms = meas.qt_ms / rr_s ** (1.0 / 3.0)
        meas.t_axis_deg = _axis(median, qrs_off + 1, t_end, good, q, "t_axis_deg")
    if p_on is None:
        q["flags"].append("p_absent")
        reason = p_reason
        if not meas.rhythm_regular:
            reason += " with irregular RR (atrial fibrillation pattern)"
        meas._not_measurable(("pr_ms", "p_ms", "p_axis_deg"), reason)
    else:
        meas.pr_ms = (qrs_on - p_on) * ms
        meas.p_ms = (p_off - p_on + 1) * ms
        meas.p_axis_deg = _axis(median, p_on, p_off, good, q, "p_axis_deg")


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


def _axis(median: np.ndarray, a: int, b: int, good: list[int], quality: dict, key: str
          ) -> float | None:
    """Frontal axis in degrees from the net areas of I and aVF over samples [a, b]."""
    if LIMB["I"] not in good or LIMB["aVF"] not in good:
        quality["reasons"][key] = "lead I or aVF is off"
        return None
    area_i = median[LIMB["I"], a:b + 1].sum()
    area_avf = median[LIMB["aVF"], a:b + 1].sum()
    return math.degrees(math.atan2(area_avf / SQRT3_2, area_i))


# --- Picture ------------------------------------------------------------------------------------

DRAW_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
DRAW_SPEED_MM_S = 50.0           # median beats are read at double speed
DRAW_GAIN_MM_MV = 10.0
DRAW_PX_PER_MM = 4.0
DRAW_ROW_MM = 40.0
DRAW_MARKERS = {"p_on": ((0, 120, 220), "P on"), "p_off": ((0, 120, 220), "P off"),
                "qrs_on": ((0, 150, 60), "QRS on"), "qrs_off": ((0, 150, 60), "QRS off"),
                "t_end": ((200, 100, 0), "T end")}


def draw_median_beats(meas: Measurements, out_png) -> None:
    """Write a PNG of the 12 median beats on ECG paper (50 mm/s, 10 mm/mV) with the global fiducials
    as vertical lines, so a reader can check where each interval was measured."""
    from PIL import Image, ImageDraw

    if meas.median_beats is None:
        raise ValueError("no median beats to draw: " + "; ".join(sorted(set(meas.quality["reasons"].values()))))
    beats, fs, fid = meas.median_beats, meas.fs, meas.fiducials
    r = fid["r"]
    lo = max(0, r - int(0.40 * fs) if fid.get("p_on") is None else fid["p_on"] - int(0.08 * fs))
    hi = min(beats.shape[1], (fid["t_end"] if fid.get("t_end") is not None else r + int(0.45 * fs))
             + int(0.10 * fs))
    px = DRAW_PX_PER_MM
    panel_mm = (hi - lo) / fs * DRAW_SPEED_MM_S + 6.0
    header_mm = 14.0
    width, height = int(4 * panel_mm * px), int((header_mm + 3 * DRAW_ROW_MM) * px)
    img = Image.new("RGB", (width, height), (255, 250, 250))
    draw = ImageDraw.Draw(img)
    for mm in range(int(width / px) + 1):                                   # 1 mm and 5 mm grid
        draw.line([(mm * px, header_mm * px), (mm * px, height)], fill=(232, 128, 128) if mm % 5 == 0
                  else (248, 210, 210))
    for mm in range(int(header_mm), int(height / px) + 1):
        draw.line([(0, mm * px), (width, mm * px)], fill=(232, 128, 128) if (mm - header_mm) % 5 == 0
                  else (248, 210, 210))
    d = meas.to_dict()
    labels = {"hr_bpm": "HR", "pr_ms": "PR", "qrs_ms": "QRS", "qt_ms": "QT", "qtc_bazett_ms": "QTcB",
              "qrs_axis_deg": "QRS axis"}
    text = "  ".join(f"{label} {d[k]:g}" for k, label in labels.items() if d[k] is not None)
    draw.text((4, 4), "median beats, 50 mm/s, 10 mm/mV   " + text, fill=(0, 0, 0))
    legend_x = 4
    for colour, label in {v[1][:1]: v for v in DRAW_MARKERS.values()}.values():
        draw.text((legend_x, 4 + 12 * 1.5), label.split()[0] + " on/off" if label[0] != "T" else label,
                  fill=colour)
        legend_x += 90
    t = (np.arange(lo, hi) - lo) / fs * DRAW_SPEED_MM_S + 3.0                   # mm within a panel
    for row, names in enumerate(DRAW_LAYOUT):
        base_mm = header_mm + (row + 0.55) * DRAW_ROW_MM
        for col, name in enumerate(names):
            x0 = col * panel_mm
            for key, (colour, _) in DRAW_MARKERS.items():
                if fid.get(key) is not None and lo <= fid[key] < hi:
                    xm = (x0 + (fid[key] - lo) / fs * DRAW_SPEED_MM_S + 3.0) * px
                    draw.line([(xm, (base_mm - 17) * px), (xm, (base_mm + 15) * px)], fill=colour, width=1)
            y = np.clip(beats[LEADS.index(name), lo:hi] * DRAW_GAIN_MM_MV, -17, 17)
            pts = [((x0 + tx) * px, (base_mm - ty) * px) for tx, ty in zip(t, y)]
            draw.line(pts, fill=(0, 0, 0), width=2)
            draw.text(((x0 + 1.5) * px, (base_mm - 16) * px), name, fill=(0, 0, 0))
            draw.line([(x0 * px, header_mm * px), (x0 * px, height)], fill=(120, 120, 120))
    img.save(out_png)
