"""Beats cut around the R peaks and realigned, ectopic beats left out, median beats, residual noise."""

from __future__ import annotations

import numpy as np

from ..constants import LEADS
from .quality import MIN_BEATS, Quality

ALIGN_SHIFT_MS = 16.0            # cross-correlation refinement of each beat's fiducial
ECTOPIC_CORR = 0.80              # QRS correlation with the dominant beat below this: left out
BEAT_BEFORE_MS = 500.0           # from the R peak back: PR up to ~320 ms plus the P wave
BEAT_AFTER_MS = 800.0            # from the R peak on: a QT up to ~700 ms
NOISE_RMS_MV = 0.10              # beat-to-median residual above this: noisy lead


def aligned_beats(x: np.ndarray, r_peaks: np.ndarray, fs: float, good: list[int]
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


def dominant_beats(beats: np.ndarray, r_index: int, fs: float, good: list[int]) -> tuple[np.ndarray, float]:
    """Boolean mask of beats whose QRS correlates with the median QRS (ectopic beats are not), and the median of
    those correlations (a real ECG's beats repeat: ~0.9 or more; noise's "beats" do not)."""
    qrs = slice(r_index - int(0.06 * fs), r_index + int(0.08 * fs))
    seg = beats[:, good, qrs].reshape(len(beats), -1)                        # (n_beats, n_good * W)
    seg = np.where(np.isfinite(seg), seg, 0.0)
    template = np.median(seg, axis=0)
    seg_c = seg - seg.mean(axis=1, keepdims=True)
    tpl_c = template - template.mean()
    corr = seg_c @ tpl_c / (np.linalg.norm(seg_c, axis=1) * np.linalg.norm(tpl_c) + 1e-12)
    mask = corr >= ECTOPIC_CORR
    return (mask if mask.sum() >= MIN_BEATS else np.ones(len(beats), dtype=bool)), float(np.median(corr))


def residual(beats: np.ndarray, median: np.ndarray, r: int, fs: float, rr_ms: float) -> np.ndarray:
    """Beat-to-median residual within the beat but outside its QRS, each beat's offset removed:
    noise. (n, 12, T')"""
    rr = rr_ms * fs / 1000.0
    outside = np.zeros(median.shape[1], dtype=bool)
    outside[max(r - int(0.45 * rr), 0): r + int(0.55 * rr)] = True
    outside[max(r - int(0.10 * fs), 0): r + int(0.12 * fs)] = False   # QRS amplitude varies beat to beat
    resid = beats[:, :, outside] - median[None, :, outside]
    resid = resid - np.nanmean(resid, axis=2, keepdims=True)
    return np.where(np.isfinite(resid), resid, 0.0)


def flag_noise(resid: np.ndarray, good: list[int], quality: Quality) -> None:
    """Per-lead RMS of the beat-to-median residual; leads over NOISE_RMS_MV are noisy."""
    rms = np.sqrt((resid ** 2).mean(axis=(0, 2)))                            # (12,)
    quality.noise_rms_mv = {LEADS[i]: round(float(rms[i]), 3) for i in good}
    noisy = [LEADS[i] for i in good if rms[i] > NOISE_RMS_MV]
    if noisy:
        quality.flags.append("noise")
        quality.noisy_leads = noisy
