"""GE MUSE XML (<RestingECG>, MUSE 7-9 exports: 8 stored leads, the 12SL measurements and statements) and
HL7 aECG (<AnnotatedECG>, the FDA's annotated ECG: leads as decimal digits with scale and origin, the
device's measurements and statements as annotations), read with ecgdatakit's parsers (defusedxml inside:
entity declarations and external references refused), then checked and assembled as every reader does.

ecgdatakit's wheel is ~49 MB (it ships a denoising network we do not use; 64 MB installed), so it is the
`formats` extra, not a base dependency: pip install 'gem-edge[formats]'. Its import costs ~150 ms here.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import EcgReadError
from .checks import _one_line, _one_rate_and_length, _unit_scale
from .leads import _finish, _plan_leads
from .record import DeviceReport, EcgRecord

_MUSE_ROOT = re.compile(rb"<RestingECG[\s>]")
_AECG_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?AnnotatedECG[\s>/]")
_INSTALL = "reading {name} needs the formats extra: pip install 'gem-edge[formats]' (ecgdatakit)"

# ecgdatakit GlobalMeasurements field -> our key
MEASUREMENTS = {"heart_rate": "hr_bpm", "rr_interval": "rr_ms", "pr_interval": "pr_ms", "qrs_duration": "qrs_ms",
                "qt_interval": "qt_ms", "qtc_bazett": "qtc_ms", "qtc_fridericia": "qtc_ms",
                "p_axis": "p_axis_deg", "qrs_axis": "qrs_axis_deg", "t_axis": "t_axis_deg"}


def _xml_root(pattern: re.Pattern, head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and pattern.search(head) is not None


def is_muse(head: bytes) -> bool:
    return _xml_root(_MUSE_ROOT, head)


def is_aecg(head: bytes) -> bool:
    return _xml_root(_AECG_ROOT, head)


def read_muse(path: Path, fs_arg: float | None) -> EcgRecord:
    return _read(path, fs_arg, "GE MUSE XML", "ge_muse_xml", "GEMuseXMLParser", ("GE", "12SL"))


def read_aecg(path: Path, fs_arg: float | None) -> EcgRecord:
    return _read(path, fs_arg, "HL7 aECG", "hl7_aecg", "HL7aECGParser", ("", ""))


def _read(path: Path, fs_arg, name: str, module: str, parser: str, vendor_program: tuple[str, str]) -> EcgRecord:
    try:
        import importlib

        from ecgdatakit import ECGDataKitError

        parser_cls = getattr(importlib.import_module(f"ecgdatakit.parsing.parsers.{module}"), parser)
    except ImportError:
        raise EcgReadError(path, _INSTALL.format(name=name)) from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = parser_cls().parse(Path(path)).to_physical()
    except (ECGDataKitError, ValueError) as exc:
        raise EcgReadError(path, f"{name} unreadable: {_one_line(exc)}") from None
    leads = record.leads
    if not leads:
        raise EcgReadError(path, f"{name} holds no rhythm waveform")
    raw = [lead.label for lead in leads if lead.is_raw]
    if raw:
        raise EcgReadError(path, f"leads {', '.join(raw)} have no amplitude units: samples are uncalibrated")
    plan = _plan_leads(path, [lead.label for lead in leads])
    used = [leads[c] for c in plan.channels]
    fs, _ = _one_rate_and_length(path, [lead.sampling_rate for lead in used], [len(lead.samples) for lead in used],
                                 fs_arg)
    scales = [_unit_scale(path, leads[c].label, leads[c].resolution_unit or leads[c].units) for c in plan.channels]
    signal = np.stack([np.asarray(leads[c].samples, np.float64) for c in plan.channels]) * np.asarray(scales)[:, None]
    notes = [f"{name}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    return _finish(path, signal, fs, plan, list(plan.warnings) + notes, device=_device_report(record, *vendor_program))


def _device_report(record, vendor: str, program: str) -> DeviceReport | None:
    m = record.measurements
    measurements = {}
    for name, key in MEASUREMENTS.items():
        value = getattr(m, name, None)
        if value is not None and key not in measurements:
            measurements[key] = float(value)
    statements = tuple(" ".join(f"{left} ({right})" if right else left for left, right in [s]).strip()
                       for s in record.interpretation.statements if s and s[0])
    qtc = record.annotations.get("QTCorrected")                  # MUSE's QTc: ecgdatakit keeps it as text
    if "qtc_ms" not in measurements and qtc:
        try:
            measurements["qtc_ms"] = float(qtc)
        except ValueError:
            pass
    device = record.recording.device
    if not measurements and not statements:
        return None
    return DeviceReport(vendor=vendor or device.manufacturer, model=device.model or device.name,
                        program=" ".join(filter(None, (program, device.software_version))),
                        measurements=measurements, statements=statements)
