"""The formats read with ecgdatakit's parsers (GE MUSE XML, HL7 aECG, SCP-ECG): one path from its `ECGRecord`
to our checked `EcgRecord`, and the device's measurements and statements into a `DeviceReport`.

ecgdatakit's wheel is ~49 MB (it ships a denoising network we do not use; 64 MB installed), so it is the
`formats` extra, not a base dependency: pip install 'gem-edge[formats]'. Its import costs ~150 ms here.
Without it, a file of one of these formats is refused in one line that names the install.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..errors import EcgReadError
from .checks import _one_line, _one_rate_and_length, _unit_scale
from .leads import _finish, _plan_leads
from .record import DeviceReport, EcgRecord

_INSTALL = "reading {name} needs the formats extra: pip install 'gem-edge[formats]' (ecgdatakit)"

# ecgdatakit GlobalMeasurements field -> our key
MEASUREMENTS = {"heart_rate": "hr_bpm", "rr_interval": "rr_ms", "pr_interval": "pr_ms", "qrs_duration": "qrs_ms",
                "qt_interval": "qt_ms", "qtc_bazett": "qtc_ms", "qtc_fridericia": "qtc_ms",
                "p_axis": "p_axis_deg", "qrs_axis": "qrs_axis_deg", "t_axis": "t_axis_deg"}


class EcgdatakitFormat(NamedTuple):
    """One format read through ecgdatakit: its parser, and what the format adds to the device's report."""

    name: str                     # for messages: "GE MUSE XML"
    module: str                   # ecgdatakit.parsing.parsers.<module>
    parser: str                   # the parser class in it
    vendor: str = ""              # when the file does not name it
    program: str = ""             # the interpretation program, when the format implies it ("12SL")
    # the format's own extra device measurements from the parsed record: {our key: value}
    extra_measurements: Callable[[object], dict[str, float]] = lambda record: {}
    refuse_warning: str = ""      # an ecgdatakit.exceptions warning that means the file is damaged: refused


def xml_root(pattern: re.Pattern, head: bytes) -> bool:
    """An XML document whose root element matches `pattern` within the file's first bytes."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and pattern.search(head) is not None


def read_with_ecgdatakit(path: Path, fs_arg: float | None, fmt: EcgdatakitFormat) -> EcgRecord:
    try:
        from ecgdatakit import ECGDataKitError, exceptions

        parser_cls = getattr(importlib.import_module(f"ecgdatakit.parsing.parsers.{fmt.module}"), fmt.parser)
    except ImportError:
        raise EcgReadError(path, _INSTALL.format(name=fmt.name)) from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            record = parser_cls().parse(Path(path)).to_physical()
    except (ECGDataKitError, ValueError) as exc:
        raise EcgReadError(path, f"{fmt.name} unreadable: {_one_line(exc)}") from None
    damaged = getattr(exceptions, fmt.refuse_warning) if fmt.refuse_warning else ()
    for w in caught:
        if damaged and issubclass(w.category, damaged):
            raise EcgReadError(path, f"{fmt.name} damaged: {_one_line(w.message)}")
    leads = record.leads
    if not leads:
        raise EcgReadError(path, f"{fmt.name} holds no rhythm waveform")
    raw = [lead.label for lead in leads if lead.is_raw]
    if raw:
        raise EcgReadError(path, f"leads {', '.join(raw)} have no amplitude units: samples are uncalibrated")
    plan = _plan_leads(path, [lead.label for lead in leads])
    used = [leads[c] for c in plan.channels]
    fs, _ = _one_rate_and_length(path, [lead.sampling_rate for lead in used], [len(lead.samples) for lead in used],
                                 fs_arg)
    scales = [_unit_scale(path, leads[c].label, leads[c].resolution_unit or leads[c].units) for c in plan.channels]
    signal = np.stack([np.asarray(leads[c].samples, np.float64) for c in plan.channels]) * np.asarray(scales)[:, None]
    notes = [f"{fmt.name}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    return _finish(path, signal, fs, plan, list(plan.warnings) + notes, device=_device_report(record, fmt))


def _device_report(record, fmt: EcgdatakitFormat) -> DeviceReport | None:
    m = record.measurements
    measurements = {}
    for name, key in MEASUREMENTS.items():
        value = getattr(m, name, None)
        if value is not None and key not in measurements:
            measurements[key] = float(value)
    for key, value in fmt.extra_measurements(record).items():
        measurements.setdefault(key, float(value))
    if "hr_bpm" not in measurements and measurements.get("rr_ms"):
        measurements["hr_bpm"] = round(60000.0 / measurements["rr_ms"], 1)     # the rate its RR implies
    statements = tuple((f"{left} ({right})" if right else left).strip()
                       for left, right in (s for s in record.interpretation.statements if s and s[0]))
    device = record.recording.device
    if not measurements and not statements:
        return None
    return DeviceReport(vendor=fmt.vendor or device.manufacturer, model=device.model or device.name,
                        program=" ".join(filter(None, (fmt.program, device.software_version))),
                        measurements=measurements, statements=statements)
