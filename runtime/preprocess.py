"""Turn an ECG into GEM's ECG-tower input: (12, 5000) float32 mV, 10 s at 500 Hz.

GEM's own preprocessing (gem-spec section 4, `train.py` `LazySupervisedDataset.__getitem__`): mV, leads in
`LEADS` order, NaN/Inf -> 0, keep the first 5000 samples, zero-pad at the end if shorter. Nothing else.
Our one addition: GEM never resamples (a 1000 Hz file would go in as 5 s of signal), so other rates are
resampled to 500 Hz with an anti-aliased polyphase filter first. Every change to the signal is reported
as a warning; none is silent. One pure numpy/scipy function shared by training and serving.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from .constants import ECG_FS, ECG_SAMPLES, ECG_SECONDS, LEADS
from .errors import EcgReadError
from .readers import EcgRecord


def preprocess_ecg(record: EcgRecord) -> tuple[np.ndarray, list[str]]:
    """(12, 5000) float32 GEM input from a read record, plus warnings for each change made."""
    missing = [lead for lead in LEADS if lead not in record.leads]
    if missing:
        raise EcgReadError(record.source, f"record lacks leads {', '.join(missing)} for GEM")
    rows = [record.leads.index(lead) for lead in LEADS]
    return to_gem_array(record.signal[rows], record.fs)      # (12, N) in GEM lead order


def to_gem_array(signal: np.ndarray, fs: float) -> tuple[np.ndarray, list[str]]:
    """(12, N) mV at fs Hz, leads in GEM order -> (12, 5000) float32 at 500 Hz, and warnings.

    At fs == 500 this is exactly GEM's preprocessing. Otherwise only the first 10 s (plus 1 s that the
    resampling filter's tail needs) are resampled, so a 30 min Holter costs what a 10 s ECG does.
    """
    x = np.asarray(signal, dtype=np.float64)                  # (12, N)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise ValueError(f"expected a (12, N) signal, got shape {x.shape}")
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive number of Hz, got {fs!r}")
    warnings = []
    n_samples = x.shape[1]
    seconds = n_samples / fs

    # The filter reaches at most 10 * max(1, fs/500) input samples past 10 s, always < 1 s of input.
    x = x[:, : min(n_samples, math.ceil(ECG_SECONDS * fs) + math.ceil(fs))]
    bad = ~np.isfinite(x)
    n_bad = int(bad[:, : math.ceil(ECG_SECONDS * fs)].sum())
    if bad.any():
        x = np.where(bad, 0.0, x)
    if n_bad:
        warnings.append(f"{n_bad} samples of NaN/Inf set to 0")

    out_len = n_samples
    if abs(fs - ECG_FS) > 1e-9 * ECG_FS:
        ratio = Fraction(ECG_FS / fs).limit_denominator(1000)
        up, down = ratio.numerator, ratio.denominator
        # padtype="line": edges extend the end-to-end trend, so a baseline offset makes no edge ringing.
        x = resample_poly(x, up, down, axis=1, padtype="line")   # (12, ~N*up/down)
        out_len = math.ceil(n_samples * up / down)
        warnings.append(f"resampled from {fs:g} Hz to {ECG_FS} Hz")

    if out_len > ECG_SAMPLES:
        warnings.append(f"truncated to the first {ECG_SECONDS} s of {seconds:.1f} s")
    elif out_len < ECG_SAMPLES:
        warnings.append(f"zero-padded from {seconds:.1f} s to {ECG_SECONDS} s")
    gem = np.zeros((len(LEADS), ECG_SAMPLES), dtype=np.float32)     # (12, 5000)
    kept = min(out_len, ECG_SAMPLES, x.shape[1])
    gem[:, :kept] = x[:, :kept]
    return gem, warnings
