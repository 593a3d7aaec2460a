"""`EcgRecord`: what every ECG reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DeviceReport:
    """What the cart's own interpretation program wrote into the file: a reference no one here made."""

    vendor: str                                  # "Philips", "GE", ...
    model: str                                   # the device: "HeartstartMRx"
    program: str                                 # its interpretation program and version
    measurements: dict[str, float] = field(default_factory=dict)   # our keys (hr_bpm, pr_ms, ..., qtc_ms)
    statements: tuple[str, ...] = ()             # "Sinus bradycardia (rate< 50)", ...

    def to_dict(self) -> dict:
        return {"vendor": self.vendor, "model": self.model, "program": self.program,
                "measurements": dict(self.measurements), "statements": list(self.statements)}


_SEXES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def patient_sex(value) -> str | None:
    """A file's sex field -> "M", "F" or None: only an unambiguous M/Male/F/Female (any case, padded) counts;
    "Unknown", "O", "X", "U", empty, anything else (the field is untrusted input) gives None."""
    return _SEXES.get(value.strip().lower()) if isinstance(value, str) else None


@dataclass(frozen=True)
class EcgRecord:
    """A checked ECG: always the 12 GEM leads in GEM order, in mV. `signal` is read-only."""

    signal: np.ndarray          # (n_leads, n_samples) float32, mV
    fs: float                   # Hz, the file's own rate (preprocess resamples to 500 Hz)
    leads: tuple[str, ...]      # GEM names, len == n_leads
    source: str                 # the path read
    warnings: tuple[str, ...] = ()
    device: DeviceReport | None = None   # the device's own measurements and statements, where the file has them
    # leads kept with a problem the reader found or the device marks ("saturated at its limit for 0.4 s");
    # a lead with no usable signal never gets here: the record is refused (readers/signal_checks.py)
    lead_issues: dict[str, str] = field(default_factory=dict)
    # the patient's sex as the file states it, "F" or "M" (None: not stated, or stated otherwise): the diagnosis
    # check picks its sex-specific limits by it (long QT by QTc, Cornell voltage); never guessed from the signal
    sex: str | None = None

    def __post_init__(self):
        if self.signal.ndim != 2 or self.signal.shape[0] != len(self.leads):
            raise ValueError(f"signal {self.signal.shape} does not match {len(self.leads)} lead names")
        self.signal.flags.writeable = False

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs
