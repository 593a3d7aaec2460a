"""`EcgRecord`: what every ECG reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EcgRecord:
    """A checked ECG: always the 12 GEM leads in GEM order, in mV. `signal` is read-only."""

    signal: np.ndarray          # (n_leads, n_samples) float32, mV
    fs: float                   # Hz, the file's own rate (preprocess resamples to 500 Hz)
    leads: tuple[str, ...]      # GEM names, len == n_leads
    source: str                 # the path read
    warnings: tuple[str, ...] = ()

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
