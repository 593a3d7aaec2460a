"""What the learned wave delineator sees: written once here, used by its training (gem_train.delineator) and by
the runtime (measure.waves), so the two cannot drift apart.

Each lead on its own: mains notched, band-passed 0.5-40 Hz (the band of the median beats), resampled to
WAVE_FS, its median taken off and divided by its 99th percentile of |x| (the shared LUDB copy has every lead
rescaled to 1 mV peak to peak, carts write real millivolts: the delineator must not care). The network labels
every sample none / P / QRS / T (WAVE_CLASSES).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from .detection import bandpass, notch_mains

WAVE_FS = 250                               # Hz: 4 ms per sample, a quarter of the tolerances we are held to
WAVE_BAND_HZ = (0.5, 40.0)
WAVE_CLASSES = ("none", "P", "QRS", "T")
WAVE_MODEL_MULTIPLE = 16                    # the network halves its length 4 times: inputs padded to this
MODEL_FILE = "wave_delineator.onnx"         # beside this module


def wave_input(x: np.ndarray, fs: float) -> np.ndarray:
    """(n_leads, N) mV at fs -> (n_leads, M) float32 at WAVE_FS, normalised per lead (see the module docstring)."""
    return filtered_wave_input(wave_filter(np.asarray(x, dtype=np.float64), fs), fs)


def wave_filter(x: np.ndarray, fs: float) -> np.ndarray:
    """Mains notched, band-passed 0.5-40 Hz (wander and hum out, wave edges kept): measure_ecg's median beats are
    made from the same filtered signal."""
    return bandpass(notch_mains(x, fs), fs, WAVE_BAND_HZ)


def filtered_wave_input(x: np.ndarray, fs: float) -> np.ndarray:
    """wave_input on a signal already through wave_filter."""
    if fs != WAVE_FS:
        ratio = Fraction(WAVE_FS / fs).limit_denominator(1000)
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    x = x - np.median(x, axis=-1, keepdims=True)
    scale = np.percentile(np.abs(x), 99, axis=-1, keepdims=True)
    return (x / np.maximum(scale, 1e-3)).astype(np.float32)


def padded_length(n: int) -> int:
    """The input length the network takes for n samples (a multiple of WAVE_MODEL_MULTIPLE)."""
    return -(-n // WAVE_MODEL_MULTIPLE) * WAVE_MODEL_MULTIPLE
