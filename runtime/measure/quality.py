"""Signal checks before measuring: zero padding, flat or disconnected leads; the quality limits."""

from __future__ import annotations

import numpy as np

from ..constants import LEADS

FLAT_MV = 0.01                   # peak-to-peak below this over the record: lead off or flat
MIN_BEATS = 3
RR_CV_REGULAR = 0.08             # RR coefficient of variation below this: regular rhythm


def trim_zero_padding(x: np.ndarray, quality: dict) -> np.ndarray:
    """Drop a tail where every lead is exactly 0 (preprocess pads short records with zeros)."""
    active = np.flatnonzero(np.any(x != 0.0, axis=0))
    end = int(active[-1]) + 1 if active.size else 0
    if end < x.shape[1]:
        quality["flags"].append("zero_padded")
        quality["zero_padded_samples"] = int(x.shape[1] - end)
    return x[:, :end]


def good_leads(x: np.ndarray, quality: dict) -> list[int]:
    """Leads with signal; flat or disconnected ones are listed in quality["leads_off"]."""
    ptp = np.ptp(x, axis=1) if x.shape[1] else np.zeros(len(LEADS))
    off = [LEADS[i] for i in range(len(LEADS)) if ptp[i] < FLAT_MV]
    if off:
        quality["flags"].append("lead_off")
        quality["leads_off"] = off
    return [i for i in range(len(LEADS)) if LEADS[i] not in off]

