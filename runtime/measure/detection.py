"""R peaks: band-passed spatial QRS energy, adaptive threshold, refractory period and search-back."""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, filtfilt, find_peaks, iirnotch, sosfiltfilt

DETECT_BAND_HZ = (5.0, 20.0)     # QRS energy band: rejects wander, T waves and most muscle noise
INTEGRATION_MS = 80.0            # moving window over the squared spatial velocity
REFRACTORY_MS = 200.0            # no second QRS this soon (a rate of 300 bpm)
T_WAVE_WINDOW_MS = 360.0         # a candidate this close with half the slope is a T wave
SEARCH_BACK_RR = 1.66            # a gap this many mean RRs long is searched again at half threshold


def bandpass(x: np.ndarray, fs: float, band: tuple[float, float]) -> np.ndarray:
    high = min(band[1], 0.45 * fs)
    sos = butter(2, [band[0], high], btype="band", fs=fs, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def notch_mains(x: np.ndarray, fs: float, hz: tuple[float, ...] = (50.0, 60.0), q: float = 25.0) -> np.ndarray:
    """Both mains frequencies notched out (a cart's mains filter): a 40 Hz low-pass of order 2 leaves a
    0.1 mV hum at 60 Hz at ~30 uV, enough to move wave edges on a few-beat median."""
    for f0 in hz:
        if f0 < 0.45 * fs:
            b, a = iirnotch(f0, q, fs=fs)
            x = filtfilt(b, a, x, axis=-1)
    return x


# --- R peaks ------------------------------------------------------------------------------------

def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices from all good leads (n_good, n): spatial QRS energy, adaptive threshold."""
    bp = bandpass(x, fs, DETECT_BAND_HZ)
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
