"""GE MUSE XML (<RestingECG>, MUSE 7-9 exports): 8 stored leads (I, II, V1-V6; the other four derived), with
the 12SL program's measurements and statements, read with ecgdatakit's MUSE parser (defusedxml inside:
entity declarations and external references refused).

ecgdatakit's wheel is ~49 MB (it ships a denoising network we do not use; 64 MB installed), so it is the
`formats` extra, not a base dependency: pip install 'gem-edge[formats]'. Its import costs ~150 ms here.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import EcgReadError
from .checks import _check_duration, _check_fs, _check_fs_agrees, _one_line, _unit_scale
from .leads import _finish, _plan_leads
from .record import DeviceReport, EcgRecord

_ROOT = re.compile(rb"<RestingECG[\s>]")
_INSTALL = "reading GE MUSE XML needs the formats extra: pip install 'gem-edge[formats]' (ecgdatakit)"

# ecgdatakit GlobalMeasurements field -> our key
MEASUREMENTS = {"heart_rate": "hr_bpm", "rr_interval": "rr_ms", "pr_interval": "pr_ms", "qrs_duration": "qrs_ms",
                "qt_interval": "qt_ms", "qtc_bazett": "qtc_ms", "qtc_fridericia": "qtc_ms",
                "p_axis": "p_axis_deg", "qrs_axis": "qrs_axis_deg", "t_axis": "t_axis_deg"}


def is_muse(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and _ROOT.search(head) is not None


def read_muse(path: Path, fs_arg: float | None) -> EcgRecord:
    try:
        from ecgdatakit import ECGDataKitError
        from ecgdatakit.parsing.parsers.ge_muse_xml import GEMuseXMLParser
    except ImportError:
        raise EcgReadError(path, _INSTALL) from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = GEMuseXMLParser().parse(Path(path)).to_physical()
    except (ECGDataKitError, ValueError) as exc:
        raise EcgReadError(path, f"GE MUSE XML unreadable: {_one_line(exc)}") from None
    leads = record.leads
    if not leads:
        raise EcgReadError(path, "GE MUSE XML holds no rhythm waveform")
    raw = [lead.label for lead in leads if lead.is_raw]
    if raw:
        raise EcgReadError(path, f"leads {', '.join(raw)} have no amplitude units: samples are uncalibrated")
    rates = sorted({float(lead.sampling_rate) for lead in leads})
    if len(rates) != 1:
        raise EcgReadError(path, f"leads sampled at different rates ({', '.join(f'{r:g}' for r in rates)} Hz)")
    fs = rates[0]
    _check_fs_agrees(path, fs, fs_arg)
    _check_fs(path, fs)
    lengths = sorted({len(lead.samples) for lead in leads})
    if len(lengths) != 1:
        raise EcgReadError(path, f"leads hold different numbers of samples {lengths}")
    _check_duration(path, lengths[0], fs)
    plan = _plan_leads(path, [lead.label for lead in leads])
    scales = [_unit_scale(path, leads[c].label, leads[c].resolution_unit or leads[c].units) for c in plan.channels]
    signal = np.stack([np.asarray(leads[c].samples, np.float64) for c in plan.channels]) * np.asarray(scales)[:, None]
    notes = [f"GE MUSE: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    return _finish(path, signal, fs, plan, list(plan.warnings) + notes, device=_device_report(record))


def _device_report(record) -> DeviceReport:
    m = record.measurements
    measurements = {}
    for name, key in MEASUREMENTS.items():
        value = getattr(m, name, None)
        if value is not None and key not in measurements:
            measurements[key] = float(value)
    statements = tuple(" ".join(f"{left} ({right})" if right else left for left, right in [s]).strip()
                       for s in record.interpretation.statements if s and s[0])
    device = record.recording.device
    return DeviceReport(vendor="GE", model=device.model or device.name, program=" ".join(
        filter(None, ("12SL", device.software_version))), measurements=measurements, statements=statements)
