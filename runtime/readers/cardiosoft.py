"""GE CardioSoft XML (`<CardiologyXML>`: GE's CardioSoft PC ECG system with the 12SL program; the layout of UK
Biobank's resting ECGs), with the device's own measurements and statements.

| element | what is read |
|---|---|
| `StripData/SampleRate` (Hz), `Resolution` (uVperLsb), `ChannelSampleCountTotal` | rate, scale, samples a lead |
| `StripData/WaveformData lead="I"` ... | the 10 s rhythm strip, comma-separated integers, one element a lead |
| `RestingECGMeasurements` | VentricularRate, RRInterval, PQInterval, QRSDuration, QTInterval, QTCInterval, P/R/T axes |
| `Interpretation/Diagnosis/DiagnosisText` | the statements, up to the first separator line (`---`), after which |
|  | CardioSoft lists its full-disclosure arrhythmia counts, not an interpretation |
| `ClinicalInfo/DeviceInfo` | Desc (CardioSoft), SoftwareVer, AnalysisVer (12SL V21) |
| `PatientInfo/Gender` | the patient's sex (MALE / FEMALE; anything else: not stated) |

Our own reader: no maintained library reads this layout under a licence we can ship (ECGProcess, which ships
the example file, is GPL-3 and pulls in lxml, pandas and matplotlib; ecgdatakit has no CardioSoft parser).
The document is parsed with defusedxml after its size is bounded (`xmlread`); it is ISO-8859-1 or UTF-8.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import EcgReadError
from .checks import (
    check_channels,
    check_duration,
    check_fs,
    check_fs_agrees,
    kept_note,
    kept_samples,
    plausible_gain,
    positive_number,
    unit_scale,
)
from .leads import finish, plan_leads
from .record import DeviceReport, EcgRecord, patient_sex
from .xmlread import find, findall, parse, root_pattern, text, xml_root

_ROOT = root_pattern("CardiologyXML")
_UNIT = {"uvperlsb": "uV", "mvperlsb": "mV", "nvperlsb": "nV"}
# RestingECGMeasurements element -> (our key, the unit it must be in)
DEVICE_MEASUREMENTS = {"VentricularRate": ("hr_bpm", "bpm"), "RRInterval": ("rr_ms", "ms"),
                       "PQInterval": ("pr_ms", "ms"), "QRSDuration": ("qrs_ms", "ms"),
                       "QTInterval": ("qt_ms", "ms"), "QTCInterval": ("qtc_ms", "ms"),
                       "PAxis": ("p_axis_deg", "degrees"), "RAxis": ("qrs_axis_deg", "degrees"),
                       "TAxis": ("t_axis_deg", "degrees")}


def is_cardiosoft(head: bytes) -> bool:
    return xml_root(_ROOT, head)


def read_cardiosoft(path: Path, fs_arg: float | None) -> EcgRecord:
    root = parse(path, "GE CardioSoft XML")
    strip = find(root, "StripData")
    if strip is None:
        raise EcgReadError(path, "CardioSoft XML has no StripData (the rhythm strip)")
    fs = positive_number(path, text(find(strip, "SampleRate")), "CardioSoft StripData SampleRate")
    check_fs_agrees(path, fs, fs_arg)
    check_fs(path, fs)
    resolution = find(strip, "Resolution")
    unit = _UNIT.get((resolution.get("units", "") if resolution is not None else "").lower())
    if unit is None:
        raise EcgReadError(path, "CardioSoft StripData Resolution has units "
                                 f"{resolution.get('units') if resolution is not None else None!r}, not uVperLsb")
    scale = positive_number(path, text(resolution), "CardioSoft StripData Resolution") * unit_scale(path, "all", unit)
    plausible_gain(path, scale, "CardioSoft StripData Resolution")
    waveforms = findall(strip, "WaveformData")
    check_channels(path, len(waveforms), "CardioSoft StripData WaveformData count")
    n = _count(path, text(find(strip, "ChannelSampleCountTotal")))
    check_duration(path, n, fs)
    plan = plan_leads(path, [w.get("lead", "") for w in waveforms])
    kept = kept_samples(n, fs)
    rows = [_samples(path, waveforms[c], n, kept) for c in plan.channels]
    signal = np.stack(rows) * scale                                      # (n_used, N) mV
    return finish(path, signal, fs, plan, list(plan.warnings) + kept_note(n, fs), device=_device_report(root),
                  sex=patient_sex(text(find(root, "PatientInfo/Gender"))))          # MALE, FEMALE, UNKNOWN


def _count(path: Path, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EcgReadError(path, f"CardioSoft StripData ChannelSampleCountTotal is {value!r}, not a count") from None


def _samples(path: Path, element, n: int, kept: int) -> np.ndarray:
    """The first `kept` of a lead's `n` comma-separated integers, after checking the text can hold n of them."""
    body = element.text or ""
    lead = element.get("lead", "?")
    if len(body) < 2 * n - 1:                    # every sample is a digit and a comma at least
        raise EcgReadError(path, f"CardioSoft lead {lead} says {n} samples but its text holds "
                                 f"{(len(body) + 1) // 2} at most")
    values = body.split(",", kept)
    if len(values) < kept:
        raise EcgReadError(path, f"CardioSoft lead {lead} holds {len(values)} samples, "
                                 f"ChannelSampleCountTotal says {n}")
    try:
        return np.array([int(v) for v in values[:kept]], np.float64)
    except ValueError:
        bad = next(v for v in values[:kept] if not v.strip().lstrip("+-").isdigit())
        raise EcgReadError(path, f"CardioSoft lead {lead} holds {bad.strip()[:20]!r}, not a sample value") from None


def _device_report(root) -> DeviceReport | None:
    info = find(root, "ClinicalInfo/DeviceInfo")
    values = find(root, "RestingECGMeasurements")
    measurements = {}
    for tag, (key, unit) in DEVICE_MEASUREMENTS.items():
        element = find(values, tag)
        if element is None or element.get("units", unit).lower() != unit:
            continue
        try:
            value = float(text(element))
        except ValueError:                       # empty: not measured
            continue
        if math.isfinite(value):
            measurements[key] = value
    statements = []
    for line in findall(find(root, "Interpretation/Diagnosis"), "DiagnosisText"):
        said = " ".join(text(line).split())
        if said and not any(ch.isalnum() for ch in said):
            break                                # "---": what follows is the full-disclosure arrhythmia count
        if said:
            statements.append(said)
    if not measurements and not statements:
        return None
    return DeviceReport(vendor="GE", model=" ".join(filter(None, (text(find(info, "Desc")),
                                                                  text(find(info, "SoftwareVer"))))),
                        program=text(find(info, "AnalysisVer")) or text(find(values, "DiagnosisVersion")),
                        measurements=measurements, statements=tuple(statements))
