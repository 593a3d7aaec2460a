"""From a file's channel names to the 12 GEM leads: name normalization, the lead plan, assembly.

A reader first plans (`plan_leads`, from the names alone, before reading samples), then reads only the
planned channels and hands them to `finish`, which checks each lead's signal (`signal_checks`), derives missing
limb leads and returns the `EcgRecord`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..constants import LEADS
from ..errors import EcgReadError
from .checks import plausible_device_values
from .record import DeviceReport, EcgRecord
from .signal_checks import check_leads

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


_PEDIATRIC = {"v3r", "v4r", "v7"}     # the pediatric set: I, II, V4R (or V3R), V1, V2, V4, V6, V7


@dataclass(frozen=True)
class LeadPlan:
    """Which file channels become which GEM leads; decided from names alone, before reading samples."""

    channels: tuple[int, ...]          # file channel indices to read, ascending
    stored: dict                       # GEM lead -> (row in the read signal, sign)
    derived: tuple[str, ...]           # GEM leads computed from I and II
    warnings: tuple[str, ...]


def plan_leads(path: Path, names: list[str]) -> LeadPlan:
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
        pediatric = [name for name in extras if re.sub(r"[\s_]|lead", "", str(name).lower()) in _PEDIATRIC]
        if pediatric and any(lead in missing for lead in ("V3", "V5")):
            note += (f"; {', '.join(pediatric)} in place of {', '.join(l for l in ('V3', 'V5') if l in missing)}: "
                     "a pediatric lead set")
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
    return LeadPlan(channels, stored, derived, tuple(warnings))


def finish(path: Path, signal: np.ndarray, fs: float, plan: LeadPlan, warnings: list[str],
           device: DeviceReport | None = None, device_off: dict[str, tuple[float, str]] | None = None,
           adc_limits: list[tuple[float, float]] | None = None, sex: str | None = None) -> EcgRecord:
    """Check each stored lead's signal, derive missing limb leads, return the 12 leads in GEM order.

    signal: (len(plan.channels), N) float mV, rows in plan.channels order; device_off: GEM lead -> (seconds,
    what the device says) of its own leads-off marking, where the file has one; adc_limits: each row's ADC
    range in mV (after the sign the plan gives it is not applied), where the format declares it; sex: the patient's,
    "F"/"M" as the file states it (`record.patient_sex`), else None."""
    row_leads = sorted(plan.stored, key=lambda lead: plan.stored[lead][0])   # GEM name of each signal row
    issues = check_leads(path, signal, row_leads, fs, device_off or {}, plan.derived, adc_limits)
    leads = {lead: signal[row] * sign for lead, (row, sign) in plan.stored.items()}
    for lead in plan.derived:
        leads[lead] = LIMB_FORMULAS[lead](leads["I"], leads["II"])
    out = np.stack([leads[lead] for lead in LEADS]).astype(np.float32)   # (12, N) mV
    with np.errstate(invalid="ignore"):
        peak = float(np.nanmax(np.abs(out)))
    if peak > PLAUSIBLE_MAX_MV:
        warnings.append(f"amplitudes reach {peak:.0f} mV (ECG is usually < 5 mV): check the units")
    warnings += [f"lead {lead}: {problem}" for lead, problem in issues.items()]
    if device is not None:
        measurements, notes = plausible_device_values(device.measurements)
        warnings += notes
        device = replace(device, measurements=measurements,
                         statements=tuple(s for s in device.statements if s.strip()))
    return EcgRecord(out, fs, LEADS, str(path), tuple(warnings), device, issues, sex=sex)
