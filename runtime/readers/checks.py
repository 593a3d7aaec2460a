"""Checks every format reader shares (sampling rate, duration, voltage units) and message helpers."""

from __future__ import annotations

import math
from pathlib import Path

from ..constants import MIN_ECG_SECONDS
from ..errors import EcgReadError

MIN_FS = 100.0          # Hz: below this QRS complexes are not resolved
MAX_FS = 20_000.0       # Hz: above this the rate is a header error, not an ECG

_MV_PER_UNIT = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
                "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
                "v": 1e3, "volt": 1e3, "volts": 1e3, "nv": 1e-6, "nanovolt": 1e-6}


def mv_per_unit(unit: str | None) -> float | None:
    """Scale from a file's voltage unit to mV; None for non-voltage units. No unit means mV (WFDB default)."""
    if unit is None or not str(unit).strip():
        return 1.0
    return _MV_PER_UNIT.get(str(unit).strip().lower())


def _check_fs(path: Path, fs: float) -> None:
    if not (math.isfinite(fs) and MIN_FS <= fs <= MAX_FS):
        raise EcgReadError(path, f"sampling rate {fs:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")


def _check_fs_agrees(path: Path, file_fs: float, fs_arg: float | None) -> None:
    if fs_arg is not None and abs(float(fs_arg) - file_fs) > 1e-6 * file_fs:
        raise EcgReadError(path, f"fs={fs_arg:g} Hz given but the file says {file_fs:g} Hz")


def _check_duration(path: Path, n_samples: int, fs: float) -> None:
    seconds = n_samples / fs
    if seconds < MIN_ECG_SECONDS:
        raise EcgReadError(path, f"record is {seconds:.2f} s ({n_samples} samples at {fs:g} Hz); "
                                 f"at least {MIN_ECG_SECONDS:g} s needed")


def _unit_scale(path: Path, channel: str, unit) -> float:
    scale = mv_per_unit(unit)
    if scale is None:
        raise EcgReadError(path, f"channel '{channel}' has units '{unit}', not a voltage (expected mV, uV or V)")
    return scale


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes} bytes"


def _one_rate_and_length(path: Path, rates, lengths, fs_arg: float | None) -> tuple[float, int]:
    """Formats that store a rate and a length per lead: the used leads must share both (a per-lead rate is
    refused, not resampled quietly), the rate must be plausible and agree with fs_arg, the record long enough."""
    rates, lengths = sorted({float(r) for r in rates}), sorted({int(n) for n in lengths})
    if len(rates) != 1:
        raise EcgReadError(path, f"the ECG leads are sampled at different rates ({', '.join(f'{r:g}' for r in rates)} Hz)")
    if len(lengths) != 1:
        raise EcgReadError(path, f"the ECG leads hold different numbers of samples {lengths}")
    fs, n = rates[0], lengths[0]
    _check_fs_agrees(path, fs, fs_arg)
    _check_fs(path, fs)
    _check_duration(path, n, fs)
    return fs, n


def _positive_number(path: Path, text: str, what: str) -> float:
    """A rate or resolution a file writes as text: a finite number above 0, or one line saying what it is."""
    try:
        value = float(text)
    except ValueError:
        raise EcgReadError(path, f"{what} is {text!r}, not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise EcgReadError(path, f"{what} is {text}, not a positive number")
    return value
