"""Checks every format reader shares (sampling rate, duration, voltage units, declared sizes, the device's
numbers) and message helpers. Plain public names: the format modules import them from here."""

from __future__ import annotations

import math
from pathlib import Path

from ..constants import ECG_SECONDS, MIN_ECG_SECONDS
from ..errors import EcgReadError

MIN_FS = 100.0          # Hz: below this QRS complexes are not resolved
MAX_FS = 20_000.0       # Hz: above this the rate is a header error, not an ECG
MAX_CHANNELS = 64       # a file declaring more channels is damaged (12-lead carts store 8-16; EDF montages < 64)
# The reader keeps at most this much of a record (preprocessing uses the first 10 s): a Holter's hours are
# never decoded or widened to float, so a file's cost is bounded by this, not by its length.
KEEP_SECONDS = 60.0

_MV_PER_UNIT = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
                "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
                "v": 1e3, "volt": 1e3, "volts": 1e3, "nv": 1e-6, "nanovolt": 1e-6}

# The device's own measurements: a value outside these ranges is a damaged or misread field, never shown.
PLAUSIBLE_DEVICE = {"hr_bpm": (10, 400), "rr_ms": (150, 6000), "pr_ms": (20, 800), "qrs_ms": (20, 400),
                    "qt_ms": (80, 900), "qtc_ms": (80, 900), "p_axis_deg": (-360, 360),
                    "qrs_axis_deg": (-360, 360), "t_axis_deg": (-360, 360)}
assert ECG_SECONDS < KEEP_SECONDS


def mv_per_unit(unit: str | None) -> float | None:
    """Scale from a file's voltage unit to mV; None for non-voltage units. No unit means mV (WFDB default)."""
    if unit is None or not str(unit).strip():
        return 1.0
    return _MV_PER_UNIT.get(str(unit).strip().lower())


def check_fs(path: Path, fs: float) -> None:
    if not (math.isfinite(fs) and MIN_FS <= fs <= MAX_FS):
        raise EcgReadError(path, f"sampling rate {fs:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")


def check_fs_agrees(path: Path, file_fs: float, fs_arg: float | None) -> None:
    if fs_arg is not None and abs(float(fs_arg) - file_fs) > 1e-6 * file_fs:
        raise EcgReadError(path, f"fs={fs_arg:g} Hz given but the file says {file_fs:g} Hz")


def check_duration(path: Path, n_samples: int, fs: float) -> None:
    seconds = n_samples / fs
    if seconds < MIN_ECG_SECONDS:
        raise EcgReadError(path, f"record is {seconds:.2f} s ({n_samples} samples at {fs:g} Hz); "
                                 f"at least {MIN_ECG_SECONDS:g} s needed")


def kept_samples(n_samples: int, fs: float) -> int:
    """How many of a record's samples a reader decodes: all of them up to KEEP_SECONDS."""
    return min(int(n_samples), math.ceil(KEEP_SECONDS * fs))


def kept_note(n_samples: int, fs: float) -> list[str]:
    """The warning that says a long record was cut to KEEP_SECONDS, or none."""
    kept = kept_samples(n_samples, fs)
    return [] if kept >= n_samples else [f"read the first {kept / fs:.0f} s of {n_samples / fs:.1f} s"]


def check_channels(path: Path, count: int, what: str) -> None:
    """A declared channel count, before anything is built from it."""
    if not 0 < count <= MAX_CHANNELS:
        raise EcgReadError(path, f"{what} is {count}: not a channel count of an ECG (1-{MAX_CHANNELS})")


def check_declared(path: Path, what: str, need: int, held: int) -> None:
    """Declared counts x sizes against the bytes the file holds, before anything that size is allocated."""
    if need > held:
        raise EcgReadError(path, f"{what} need {size_text(need)} but the file holds {size_text(held)}")


def unit_scale(path: Path, channel: str, unit) -> float:
    scale = mv_per_unit(unit)
    if scale is None:
        raise EcgReadError(path, f"channel '{channel}' has units '{unit}', not a voltage (expected mV, uV or V)")
    return scale


DEFAULT_MAX_BYTES = 200 * 2**20     # a file's (with its signal files') limit, and a deflated DICOM dataset's inflated


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes} bytes"


def one_rate_and_length(path: Path, rates, lengths, fs_arg: float | None) -> tuple[float, int]:
    """Formats that store a rate and a length per lead: the used leads must share both (a per-lead rate is
    refused, not resampled quietly), the rate must be plausible and agree with fs_arg, the record long enough."""
    rates, lengths = sorted({float(r) for r in rates}), sorted({int(n) for n in lengths})
    if len(rates) != 1:
        raise EcgReadError(path, f"the ECG leads are sampled at different rates ({', '.join(f'{r:g}' for r in rates)} Hz)")
    if len(lengths) != 1:
        raise EcgReadError(path, f"the ECG leads hold different numbers of samples {lengths}")
    fs, n = rates[0], lengths[0]
    check_fs_agrees(path, fs, fs_arg)
    check_fs(path, fs)
    check_duration(path, n, fs)
    return fs, n


def positive_number(path: Path, text: str, what: str) -> float:
    """A rate or resolution a file writes as text: a finite number above 0, or one line saying what it is."""
    try:
        value = float(text)
    except ValueError:
        raise EcgReadError(path, f"{what} is {text!r}, not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise EcgReadError(path, f"{what} is {text}, not a positive number")
    return value


def plausible_gain(path: Path, mv_per_count: float, what: str) -> float:
    """A scale from stored counts to mV: finite, non-zero and within what an ECG ADC can have (1e3 mV a count
    at most; 1e-12 at least, under which a 32-bit sample spans 2 uV). A gain of 1e-300 would make every sample
    1e300 mV (inf after the float32 cast); the flat check catches a tiny scale that passes this one."""
    if not (math.isfinite(mv_per_count) and 1e-12 <= abs(mv_per_count) <= 1e3):
        raise EcgReadError(path, f"{what} gives {mv_per_count:g} mV per count: not an ECG amplifier's scale")
    return mv_per_count


def plausible_device_values(values: dict) -> tuple[dict[str, float], list[str]]:
    """The device's measurements that are finite numbers in their plausible range; the others are left out
    and named in a warning (the JSON never carries NaN or Infinity)."""
    kept, dropped = {}, []
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            dropped.append(f"{key}={value!r}")
            continue
        low, high = PLAUSIBLE_DEVICE.get(key, (-1e6, 1e6))
        if math.isfinite(number) and low <= number <= high:
            kept[key] = number
        else:
            dropped.append(f"{key}={number:g}")
    return kept, ([f"left out the device's implausible {', '.join(dropped)}"] if dropped else [])
