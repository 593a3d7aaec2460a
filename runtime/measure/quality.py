"""Signal quality: what the measurement saw and why a value is missing (`Quality`), and the signal checks
made before measuring (zero padding, flat or disconnected leads)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..constants import LEADS

FLAT_MV = 0.01                   # peak-to-peak below this over the record: lead off or flat
SATURATED_MV = 8.0               # |signal| beyond this is the amplifier's rail, not a heart (a QRS is < ~5 mV) ...
SATURATED_SHARE = 0.002          # ... in at least this share of the samples: the lead is saturated
MIN_QRS_CONSISTENCY = 0.5        # median correlation of the beats' QRS with the median QRS below this: noise
NO_SIGNAL = "no usable signal"   # the start of every reason given when nothing is measured (quality flag "no_signal")
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
    """Leads with signal. Listed in quality.leads_off and left out: flat leads; leads identical sample for sample
    to another lead (a cart writes the same common-mode trace into every lead whose electrode is off: no two real
    leads are equal); saturated leads (at the amplifier's rail, flag "saturated")."""
    n = x.shape[1]
    ptp = np.ptp(x, axis=1) if n else np.zeros(len(LEADS))
    off = {i for i in range(len(LEADS)) if ptp[i] < FLAT_MV}
    for i in range(len(LEADS)):
        for j in range(i + 1, len(LEADS)):
            if not {i, j} <= off and np.array_equal(x[i], x[j]):
                off |= {i, j}
    saturated = {i for i in range(len(LEADS)) if n and np.mean(np.abs(x[i]) > SATURATED_MV) >= SATURATED_SHARE}
    if saturated - off:
        quality.flags.append("saturated")
    off |= saturated
    if off:
        quality.flags.append("lead_off")
        quality.leads_off = [LEADS[i] for i in sorted(off)]
    return [i for i in range(len(LEADS)) if i not in off]

