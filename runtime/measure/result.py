"""`Measurements`: the global measurements of one ECG, None where not measurable (the reason in quality.reasons)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import NoUsableSignalError
from .atrial import AtrialWaves
from .fields import FIELDS, MEASUREMENT_KEYS
from .quality import NO_SIGNAL, Quality


@dataclasses.dataclass
class Measurements:
    """Global measurements of one ECG; None where not measurable (reason in quality.reasons)."""

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
    quality: Quality = dataclasses.field(default_factory=Quality)
    # For drawing and checks, not in the JSON: per-lead median beats and fiducial sample indices.
    fs: float = 0.0
    median_beats: np.ndarray | None = None  # (12, T) mV, isoelectric level at 0
    fiducials: dict = dataclasses.field(default_factory=dict)   # name -> index into median_beats
    r_peaks: np.ndarray | None = None       # (n_beats,) sample indices in the input record
    beat_kept: np.ndarray | None = None     # (n_beats,) bool: the beats that made the median (ectopic ones did not)
    beat_waves: list | None = None          # (n_beats,) measure.waves.BeatWaves: each beat's global P, QRS, T
    atrial_waves: AtrialWaves | None = None  # regular atrial (flutter) waves between the beats, measure.atrial

    @property
    def has_signal(self) -> bool:
        """False when the record had no usable signal (flag "no_signal": every value None, the reason given)."""
        return "no_signal" not in self.quality.flags

    def require_signal(self, source: str = "ECG") -> Measurements:
        """self, or NoUsableSignalError naming `source` and the reason, for a record without usable signal
        (what `gem-run measure` should exit 2 on)."""
        if not self.has_signal:
            raise NoUsableSignalError(f"{source}: {self.quality.reasons.get('hr_bpm', NO_SIGNAL)}")
        return self

    def to_dict(self) -> dict:
        """JSON-ready: the measurement keys, `rhythm_regular` and `quality`; numbers rounded."""
        out = {}
        for f in FIELDS:
            value = getattr(self, f.key)
            out[f.key] = None if value is None else round(float(value), f.decimals)
        out["rhythm_regular"] = self.rhythm_regular
        out["quality"] = self.quality.to_dict()
        return out

    def refuse(self, why: str) -> None:
        """No usable signal: every value None with the reason "no usable signal (why)", flag "no_signal"."""
        for key in ("hr_bpm", "rr_ms", *MEASUREMENT_KEYS):
            setattr(self, key, None)
        self.rhythm_regular, self.median_beats, self.fiducials = None, None, {}
        self.quality.reasons.clear()
        self.mark_unmeasurable(MEASUREMENT_KEYS, f"{NO_SIGNAL} ({why})")
        self.quality.flags.append("no_signal")

    def mark_unmeasurable(self, keys, reason: str) -> None:
        """Set each of `keys` to None with `reason` in quality.reasons (the first reason given for a key stays)."""
        for key in keys:
            setattr(self, key, None)
            self.quality.reasons.setdefault(key, reason)
