"""Per-lead signal checks, on the stored leads in float64 mV before the float32 cast: no lead may be all NaN/Inf,
hold an infinite or absurd sample, be flat, sit at its ADC limit for most of the record, or be marked off by
the device. A lead with a lesser problem (saturated for part of the record, marked off by the device for part
of it) is kept and named in `EcgRecord.lead_issues`.

GEM reads all 12 leads (its ECG tower was trained on complete 12-lead records), so a record with fewer usable
leads than `MIN_USABLE_LEADS` is refused in one line that names every unusable lead and why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import LEADS
from ..errors import EcgReadError

MIN_USABLE_LEADS = len(LEADS)  # GEM's ECG tower takes 12 leads; a derived lead is as usable as I and II
MAX_ABS_MV = 1e5               # 100 V: past any ECG amplifier; such a value is a gain or unit error
FLAT_MV = 1e-3                 # a lead whose samples span less than 1 uV carries no signal
SATURATED_MIN_S = 0.1          # time at the ADC limits that names a lead saturated
SATURATED_RUN_S = 0.02         # without declared limits, runs at the lead's own extremes at least this long count
UNUSABLE_FRACTION = 0.5        # saturated or marked off for at least half the record: no usable signal


def check_leads(path: Path, signal: np.ndarray, lead_names: list[str], fs: float,
                device_off: dict[str, tuple[float, str]], derived: tuple[str, ...] = (),
                adc_limits: list[tuple[float, float]] | None = None) -> dict[str, str]:
    """Refuse a record with an unusable lead; return {lead: problem} for the leads kept with a problem.

    signal: (len(lead_names), N) float mV; device_off: GEM lead -> (seconds the device marks it off, what
    it says); adc_limits: each row's ADC range in mV where the format declares it (int16, 12-bit, EDF's
    digital range), else the lead's own extremes count only when it sits there for most of the record."""
    n = signal.shape[1]
    seconds = n / fs
    finite = np.isfinite(signal)
    for row, lead in enumerate(lead_names):
        if not finite[row].any():
            raise EcgReadError(path, f"lead {lead} is all NaN/Inf ({n} samples)")
    infinite = np.isinf(signal)            # NaN is a missing sample (WFDB's invalid value); inf is no value at all
    for row, lead in enumerate(lead_names):
        if infinite[row].any():
            first = int(np.flatnonzero(infinite[row])[0])
            raise EcgReadError(path, f"lead {lead} has {int(infinite[row].sum())} infinite samples (first at "
                                     f"{first / fs:.3f} s): not an ECG value")
    lows = np.where(finite, signal, np.inf).min(axis=1)
    highs = np.where(finite, signal, -np.inf).max(axis=1)
    for lead, lo, hi in zip(lead_names, lows, highs):
        if max(abs(lo), abs(hi)) > MAX_ABS_MV:
            raise EcgReadError(path, f"lead {lead} reaches {max(abs(lo), abs(hi)):.3g} mV: not an ECG value "
                                     "(a wrong gain or unit)")
    flat = [lead for lead, lo, hi in zip(lead_names, lows, highs) if hi - lo < FLAT_MV]
    unusable, issues = {}, {}
    for row, lead in enumerate(lead_names):
        if lead in flat:
            continue
        if adc_limits is not None:
            at_limit = _seconds_at(signal[row], *adc_limits[row], fs, min_run=1)
        else:
            at_limit = _seconds_at(signal[row], lows[row], highs[row], fs, min_run=max(2, round(SATURATED_RUN_S * fs)))
            at_limit = at_limit if at_limit >= UNUSABLE_FRACTION * seconds else 0.0
        if at_limit >= UNUSABLE_FRACTION * seconds:
            unusable[lead] = f"saturated (at its ADC limit for {at_limit:.1f} of {seconds:.1f} s)"
        elif at_limit >= SATURATED_MIN_S:
            issues[lead] = f"saturated at its ADC limit for {at_limit:.1f} s"
    for lead, (off_s, said) in device_off.items():
        if lead not in lead_names or lead in flat or off_s <= 0:     # a derived lead follows I and II
            continue
        if off_s >= UNUSABLE_FRACTION * seconds:
            unusable.setdefault(lead, f"off ({said})" if said else "off (as the device marks it)")
            issues.pop(lead, None)
        else:
            issues.setdefault(lead, f"marked off by the device for {off_s:.1f} s" + (f" ({said})" if said else ""))
    device_note = _device_note(device_off)
    if len(flat) == len(lead_names):
        raise EcgReadError(path, f"all {len(flat)} leads are flat over {seconds:.1f} s: no signal{device_note}")
    if flat and not unusable:
        values = ", ".join(f"{lead} = {lows[lead_names.index(lead)]:.3g} mV" for lead in flat)
        raise EcgReadError(path, f"flat lead{'s' if len(flat) > 1 else ''} {', '.join(flat)} "
                                 f"(constant {values} over {seconds:.1f} s): lead off?{device_note}")
    for lead in flat:
        unusable[lead] = f"flat (constant {lows[lead_names.index(lead)]:.3g} mV)"
    usable = len(LEADS) - len(set(unusable) | ({"III", "aVR", "aVL", "aVF"} & set(derived)
                                                if {"I", "II"} & set(unusable) else set()))
    if usable < MIN_USABLE_LEADS:
        by_reason = {}
        for lead in sorted(unusable, key=LEADS.index):
            by_reason.setdefault(unusable[lead], []).append(lead)
        named = "; ".join(f"{', '.join(leads)}: {why}" for why, leads in by_reason.items())
        raise EcgReadError(path, f"{len(unusable)} lead{'s' if len(unusable) > 1 else ''} without usable signal "
                                 f"({named}); GEM needs {MIN_USABLE_LEADS} usable leads, this record has {usable}")
    return issues


def _seconds_at(x: np.ndarray, lo: float, hi: float, fs: float, min_run: int) -> float:
    """Seconds the lead spends at or past `lo` or `hi`, in runs of at least `min_run` samples."""
    tolerance = 1e-6 * max(abs(lo), abs(hi), 1e-9)
    total = 0
    for at in (x <= lo + tolerance, x >= hi - tolerance):
        if int(at.sum()) < min_run:
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([False], at, [False])).view(np.int8)))
        runs = edges[1::2] - edges[::2]
        total += int(runs[runs >= min_run].sum())
    return total / fs


def _device_note(device_off: dict[str, tuple[float, str]]) -> str:
    said = sorted({what for _, what in device_off.values() if what})
    return f" (the device says: {'; '.join(said)})" if said else ""


def checked_record(record):
    """A record built by hand gets the reader's per-lead checks: one without usable signal never reaches the model."""
    check_leads(Path(record.source or "<record>"), record.signal, list(record.leads), record.fs, {})
    return record
