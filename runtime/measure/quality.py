"""Signal quality: what the measurement saw and why a value is missing (`Quality`), and the signal checks
made before measuring (zero padding, flat or disconnected leads)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..constants import LEADS

FLAT_MV = 0.01                   # peak-to-peak below this over the record: lead off or flat
MIN_BEATS = 3
RR_CV_REGULAR = 0.08             # RR coefficient of variation below this: regular rhythm


@dataclasses.dataclass
class Quality:
    """What the measurement saw and why a value is missing. Filled in as the pipeline goes, in field order;
    a field the pipeline never reached stays None and is left out of the JSON."""

    flags: list[str] = dataclasses.field(default_factory=list)    # "zero_padded", "lead_off", "noise", ...
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)   # measurement key -> why it is None
    zero_padded_samples: int | None = None       # zero tail dropped before measuring
    leads_off: list[str] | None = None           # flat or disconnected leads (only when there are any)
    n_beats: int | None = None                   # R peaks detected
    rr_cv: float | None = None                   # RR coefficient of variation
    n_excluded_beats: int | None = None          # ectopic beats left out of the median
    noise_rms_mv: dict[str, float] | None = None   # per good lead: beat-to-median residual RMS
    noisy_leads: list[str] | None = None         # leads over NOISE_RMS_MV (only when there are any)
    wave_threshold_mv: float | None = None       # spatial magnitude that marks a wave
    p_consistency: float | None = None           # mean correlation of single-beat P waves with the median P
    p_lag_ms: float | None = None                # median shift that best aligns them

    def to_dict(self) -> dict:
        """The JSON `quality` object: the fields that were set, in pipeline order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def reasons_text(self) -> str:
        """Every distinct reason a value is missing, sorted, on one line ("" when none is)."""
        return "; ".join(sorted(set(self.reasons.values())))


def trim_zero_padding(x: np.ndarray, quality: Quality) -> np.ndarray:
    """Drop a tail where every lead is exactly 0 (preprocess pads short records with zeros)."""
    active = np.flatnonzero(np.any(x != 0.0, axis=0))
    end = int(active[-1]) + 1 if active.size else 0
    if end < x.shape[1]:
        quality.flags.append("zero_padded")
        quality.zero_padded_samples = int(x.shape[1] - end)
    return x[:, :end]


def good_leads(x: np.ndarray, quality: Quality) -> list[int]:
    """Leads with signal; flat or disconnected ones are listed in quality.leads_off."""
    ptp = np.ptp(x, axis=1) if x.shape[1] else np.zeros(len(LEADS))
    off = [LEADS[i] for i in range(len(LEADS)) if ptp[i] < FLAT_MV]
    if off:
        quality.flags.append("lead_off")
        quality.leads_off = off
    return [i for i in range(len(LEADS)) if LEADS[i] not in off]

