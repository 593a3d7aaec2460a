"""Philips Sierra ECG XML (documents 1.03 / 1.04: PageWriter, IntelliSpace ECG, HeartStart), with the device's
own measurements and statements.

The waveforms (base64, XLI-compressed, limb leads stored as residuals) are decoded by `sierraecg`, the
reference decoder, which parses with defusedxml; the rest is read here, also through defusedxml, so entity
expansion, external entities and DTD fetches are refused. Samples are in units of `signalresolution` uV.
A Sierra record runs a little past 10 s with a 1 mV calibration pulse at its end (10.7-10.9 s in the shared
Philips file); preprocessing keeps the first 10 s, so the pulse reaches neither the measurements nor the model.
sierraecg and defusedxml are pure Python (192 kB installed): base dependencies, so a cart reads these files as installed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import EcgReadError
from .checks import _check_duration, _check_fs, _check_fs_agrees, _one_line, _positive_number
from .leads import _finish, _plan_leads
from .record import DeviceReport, EcgRecord

ROOT = b"restingecgdata"
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?restingecgdata[\s>/]")
_INSTALL = "reading Philips Sierra XML needs sierraecg and defusedxml (pip install sierraecg defusedxml)"

# interpretationmeasurements element -> our measurement key (device values in ms, bpm, degrees)
DEVICE_MEASUREMENTS = {"heartrate": "hr_bpm", "meanprint": "pr_ms", "meanqrsdur": "qrs_ms", "meanqtint": "qt_ms",
                       "meanqtc": "qtc_ms", "pfrontaxis": "p_axis_deg", "qrsfrontaxis": "qrs_axis_deg",
                       "tfrontaxis": "t_axis_deg"}


def is_philips(head: bytes) -> bool:
    """An XML document whose root element is <restingecgdata> (within the first bytes)."""
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and _ROOT_TAG.search(head) is not None


def read_philips(path: Path, fs_arg: float | None) -> EcgRecord:
    try:
        import defusedxml
        import defusedxml.ElementTree as ET
        import sierraecg
    except ImportError:
        raise EcgReadError(path, _INSTALL) from None
    try:
        tree = ET.parse(path)
    except defusedxml.DefusedXmlException as exc:
        raise EcgReadError(path, f"XML refused: {_one_line(exc)} (entities and external references are not "
                                 "read from untrusted files)") from None
    except ET.ParseError as exc:
        raise EcgReadError(path, f"not well-formed XML: {_one_line(exc)}") from None
    root = tree.getroot()
    signal_info = _find(root, "dataacquisition/signalcharacteristics")
    if signal_info is None:
        raise EcgReadError(path, "Sierra XML lacks dataacquisition/signalcharacteristics")
    fs = _number(path, signal_info, "samplingrate")
    uv_per_unit = _number(path, signal_info, "signalresolution")
    _check_fs_agrees(path, fs, fs_arg)
    _check_fs(path, fs)
    try:
        ecg = sierraecg.read_file(str(path))
    except Exception as exc:          # the decoder's own errors (unsupported version, bad base64 / XLI, ...)
        raise EcgReadError(path, f"Sierra XML waveforms unreadable: {type(exc).__name__}: {_one_line(exc)}") from None
    lengths = {len(lead.samples) for lead in ecg.leads}
    if len(lengths) != 1:
        raise EcgReadError(path, f"leads of different lengths {sorted(lengths)} samples")
    n_samples = lengths.pop()
    _check_duration(path, n_samples, fs)
    plan = _plan_leads(path, [lead.label for lead in ecg.leads])
    signal = np.stack([np.asarray(ecg.leads[c].samples, np.float64) for c in plan.channels]) * (uv_per_unit / 1000)
    return _finish(path, signal, fs, plan, list(plan.warnings), device=_device_report(root))   # (n, N) mV


def _device_report(root) -> DeviceReport:
    machine = _find(root, "dataacquisition/machine")
    interpretation = _find(root, "interpretations/interpretation")
    measurements, statements, program = {}, [], ""
    if interpretation is not None:
        program = " ".join(filter(None, ("Philips DXL", interpretation.get("criteriaversion"),
                                         interpretation.get("customcriteriaversion"))))
        values = _find(interpretation, "interpretationmeasurements")
        for tag, key in DEVICE_MEASUREMENTS.items():
            element = _find(values, tag) if values is not None else None
            try:
                value = float((element.text or "").strip()) if element is not None else math.nan
            except ValueError:             # "Failed", "Indeterminate": the device could not measure it
                continue
            if math.isfinite(value):
                measurements[key] = value
        for statement in _findall(interpretation, "statement"):
            left = (_text(_find(statement, "leftstatement")) or "").strip()
            right = (_text(_find(statement, "rightstatement")) or "").strip()
            if left:
                statements.append(f"{left} ({right})" if right else left)
    return DeviceReport(vendor="Philips", model=(_text(machine) or "").strip(), program=program,
                        measurements=measurements, statements=tuple(statements))


# Sierra XML puts every element in its default namespace: match local names.
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element, path: str):
    for name in path.split("/"):
        element = next((child for child in element if _local(child.tag) == name), None)
        if element is None:
            return None
    return element


def _findall(element, name: str) -> list:
    return [child for child in element if _local(child.tag) == name]


def _text(element) -> str | None:
    return None if element is None else element.text


def _number(path: Path, parent, name: str) -> float:
    return _positive_number(path, (_text(_find(parent, name)) or "").strip(), f"Sierra XML {name}")
