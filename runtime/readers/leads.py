"""From a file's channel names to the 12 GEM leads: name normalization, the lead plan, assembly.

A reader first plans (`_plan_leads`, from the names alone, before reading samples), then reads only the
planned channels and hands them to `_finish`, which checks each lead for signal, derives missing limb
leads and returns the `EcgRecord`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import LEADS
from ..errors import EcgReadError
from .record import DeviceReport, EcgRecord

PLAUSIBLE_MAX_MV = 20.0  # larger amplitudes usually mean wrong units (uV stored as mV)

INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_FORMULAS = {       # the 4 limb leads that I and II determine (Einthoven, Goldberger)
    "III": lambda i, ii: ii - i,
    "aVR": lambda i, ii: -(i + ii) / 2,
    "aVL": lambda i, ii: i - ii / 2,
    "aVF": lambda i, ii: ii - i / 2,
}

# Lower-cased, "lead"/"(Einthoven)"/spaces removed -> GEM name. "MLII" (a Holter lead) is absent on purpose.
_LEAD_ALIASES = {"i": "I", "ii": "II", "iii": "III", "di": "I", "dii": "II", "diii": "III",
                 "avr": "aVR", "avl": "aVL", "avf": "aVF",
                 **{f"v{k}": f"V{k}" for k in range(1, 7)}, **{f"c{k}": f"V{k}" for k in range(1, 7)}}


def normalize_lead_name(raw: str) -> tuple[str, float] | None:
    """'Lead I (Einthoven)' -> ('I', 1.0); '-aVR' -> ('aVR', -1.0); 'MLII', 'vx' -> None."""
    name = re.sub(r"\(.*?\)", "", str(raw).strip().lower())
    name = re.sub(r"[\s_]", "", name.replace("lead", ""))
    sign = 1.0
    if name.startswith("-") or name.startswith("neg"):
        name, sign = name.lstrip("-").removeprefix("negative").removeprefix("neg"), -1.0
    gem = _LEAD_ALIASES.get(name)
    return (gem, sign) if gem else None


@dataclass(frozen=True)
class _LeadPlan:
    """Which file channels become which GEM leads; decided from names alone, before reading samples."""

    channels: tuple[int, ...]          # file channel indices to read, ascending
    stored: dict                       # GEM lead -> (row in the read signal, sign)
    derived: tuple[str, ...]           # GEM leads computed from I and II
    warnings: tuple[str, ...]


def _plan_leads(path: Path, names: list[str]) -> _LeadPlan:
    """Map file channel names to GEM leads; refuse a lead set that cannot give the 12 GEM leads."""
    found, extras, warnings = {}, [], []
    for channel, name in enumerate(names):
        normalized = normalize_lead_name(name)
        if normalized is None:
            extras.append(str(name))
            continue
        lead, sign = normalized
        if lead in found:
            raise EcgReadError(path, f"lead {lead} appears twice (channels {found[lead][0]} "
                                     f"'{names[found[lead][0]]}' and {channel} '{name}')")
        found[lead] = (channel, sign)
    missing = [lead for lead in INDEPENDENT_LEADS if lead not in found]
    if missing:
        have = ", ".join(map(str, names)) or "no channels"
        holter = [name for name in extras if name.strip().upper().startswith("ML")]
        note = f"; {', '.join(holter)} is a modified Holter lead, not a 12-lead one" if holter else ""
        raise EcgReadError(path, f"wrong lead set for a 12-lead ECG: missing {', '.join(missing)} "
                                 f"(file has {have}{note}; need I, II, V1-V6, the other limb leads can be derived)")
    derived = tuple(lead for lead in LEADS if lead not in found)
    if derived:
        warnings.append(f"derived {', '.join(derived)} from I and II (not stored in the file)")
    if extras:
        warnings.append(f"dropped leads {', '.join(extras)} (not in the 12-lead set)")
    inverted = [names[c] for c, sign in found.values() if sign < 0]
    if inverted:
        warnings.append(f"inverted {', '.join(inverted)} to get the standard leads")
    channels = tuple(sorted(c for c, _ in found.values()))
    stored = {lead: (channels.index(c), sign) for lead, (c, sign) in found.items()}
    return _LeadPlan(channels, stored, derived, tuple(warnings))


def _finish(path: Path, signal: np.ndarray, fs: float, plan: _LeadPlan, warnings: list[str],
            device: DeviceReport | None = None) -> EcgRecord:
    """Check each stored lead for signal, derive missing limb leads, return the 12 leads in GEM order."""
    # signal: (len(plan.channels), N) float mV, rows in plan.channels order
    row_leads = sorted(plan.stored, key=lambda lead: plan.stored[lead][0])   # GEM name of each signal row
    _check_leads_alive(path, signal, row_leads, fs)
    leads = {lead: signal[row] * sign for lead, (row, sign) in plan.stored.items()}
    for lead in plan.derived:
        leads[lead] = LIMB_FORMULAS[lead](leads["I"], leads["II"])
    out = np.stack([leads[lead] for lead in LEADS]).astype(np.float32)   # (12, N) mV
    with np.errstate(invalid="ignore"):
        peak = float(np.nanmax(np.abs(out)))
    if peak > PLAUSIBLE_MAX_MV:
        warnings.append(f"amplitudes reach {peak:.0f} mV (ECG is usually < 5 mV): check the units")
    return EcgRecord(out, fs, LEADS, str(path), tuple(warnings), device)


def _check_leads_alive(path: Path, signal: np.ndarray, lead_names: list[str], fs: float) -> None:
    """No lead may be all NaN/Inf, hold an infinite sample, or be flat (lead off or a blank channel)."""
    finite = np.isfinite(signal)
    for row, lead in enumerate(lead_names):
        if not finite[row].any():
            raise EcgReadError(path, f"lead {lead} is all NaN/Inf ({signal.shape[1]} samples)")
    infinite = np.isinf(signal)            # NaN is a missing sample (WFDB's invalid value); inf is no value at all
    for row, lead in enumerate(lead_names):
        if infinite[row].any():
            first = int(np.flatnonzero(infinite[row])[0])
            raise EcgReadError(path, f"lead {lead} has {int(infinite[row].sum())} infinite samples (first at "
                                     f"{first / fs:.3f} s): not an ECG value")
    lows = np.where(finite, signal, np.inf).min(axis=1)
    highs = np.where(finite, signal, -np.inf).max(axis=1)
    flat = [lead for lead, lo, hi in zip(lead_names, lows, highs) if lo == hi]
    seconds = signal.shape[1] / fs
    if len(flat) == len(lead_names):
        raise EcgReadError(path, f"all {len(flat)} leads are flat over {seconds:.1f} s: no signal")
    if flat:
        values = ", ".join(f"{lead} = {lows[lead_names.index(lead)]:.3g} mV" for lead in flat)
        raise EcgReadError(path, f"flat lead{'s' if len(flat) > 1 else ''} {', '.join(flat)} "
                                 f"(constant {values} over {seconds:.1f} s): lead off?")
