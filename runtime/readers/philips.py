"""Philips Sierra ECG XML (documents 1.03 / 1.04: PageWriter, IntelliSpace ECG, HeartStart), with the device's
own measurements and statements.

The document is parsed once, with defusedxml, so entity expansion, external entities and DTD fetches are
refused. The waveforms (base64, XLI-compressed, limb leads stored as residuals) are decoded by our `xli.py`,
tested sample for sample against `sierraecg` (the reference decoder, now only the tests' oracle): sierraecg
re-parsed the file and decoded one sample at a time in pure Python (~130 ms of a ~135 ms read). The document
type and version, the lead labels (or the acquisition type's defaults) and the payload's attributes are read
here as sierraecg reads them. Samples are in units of `signalresolution` uV.
A Sierra record runs a little past 10 s with a 1 mV calibration pulse at its end (10.7-10.9 s in the shared
Philips file); preprocessing keeps the first 10 s, so the pulse reaches neither the measurements nor the model.
defusedxml is pure Python (128 kB installed): a base dependency, so a cart reads these files as installed.
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
from .xli import XliError, decode_waveforms

ROOT = b"restingecgdata"
_ROOT_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?restingecgdata[\s>/]")
_INSTALL = "reading Philips Sierra XML needs defusedxml (pip install defusedxml)"
DOCUMENT_TYPES = ("SierraECG", "PhilipsECG")
DOCUMENT_VERSIONS = ("1.03", "1.04", "1.04.01", "1.04.02")
# acquisitiontype -> its channels' names, for a <parsedwaveforms> without leadlabels (others: "Channel k")
DEFAULT_LABELS = dict.fromkeys(("STD-12", "10-WIRE"), ("I", "II", "III", "aVR", "aVL", "aVF",
                                                      "V1", "V2", "V3", "V4", "V5", "V6"))

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
    _check_version(path, root)
    labels, stored = _waveforms(path, root, signal_info, fs)          # stored: (n, N) int16
    _check_duration(path, stored.shape[1], fs)
    plan = _plan_leads(path, labels)
    signal = stored[list(plan.channels)].astype(np.float64) * (uv_per_unit / 1000)
    return _finish(path, signal, fs, plan, list(plan.warnings), device=_device_report(root))   # (n, N) mV


def _check_version(path: Path, root) -> None:
    info = _descendant(root, "documentinfo")
    kind, version = ((_text(_find(info, name)) or "").strip() if info is not None else ""
                     for name in ("documenttype", "documentversion"))
    if not kind or not version:
        raise EcgReadError(path, "Sierra XML lacks documentinfo/documenttype and documentversion")
    if kind not in DOCUMENT_TYPES or version not in DOCUMENT_VERSIONS:
        raise EcgReadError(path, f"Sierra XML document {kind} {version} is not supported "
                                 f"({' or '.join(DOCUMENT_TYPES)} {', '.join(DOCUMENT_VERSIONS)})")


def _waveforms(path: Path, root, signal_info, fs: float) -> tuple[list[str], np.ndarray]:
    """The lead labels and the decoded <parsedwaveforms> (n_labels, N) int16, its attributes read as sierraecg
    reads them."""
    waveforms = _descendant(root, "parsedwaveforms")
    if waveforms is None:
        raise EcgReadError(path, "Sierra XML lacks waveforms/parsedwaveforms")
    encoding = waveforms.get("dataencoding")
    if encoding != "Base64":
        raise EcgReadError(path, "Sierra XML parsedwaveforms lacks dataencoding" if encoding is None else
                           f"Sierra XML waveform encoding {encoding!r} is not supported (Base64)")
    if waveforms.get("leadlabels", ""):          # the first numberofleads of them
        count = _whole(path, waveforms.get("numberofleads"), "parsedwaveforms numberofleads")
        labels = waveforms.get("leadlabels").split(" ")[:count]
    else:                                        # the acquisition type's channel names
        count = _whole(path, _text(_find(signal_info, "numberchannelsallocated")), "numberchannelsallocated")
        names = DEFAULT_LABELS.get((_text(_find(signal_info, "acquisitiontype")) or "").strip(), ())
        labels = [names[k] if k < len(names) else f"Channel {k + 1}" for k in range(count)]
    duration_ms = _whole(path, waveforms.get("durationperchannel"), "parsedwaveforms durationperchannel")
    compression = waveforms.get("compressmethod", waveforms.get("compression", "Uncompressed"))
    try:
        stored = decode_waveforms(waveforms.text or "", compression, labels, int(duration_ms * (fs / 1000)))
    except XliError as exc:
        raise EcgReadError(path, f"Sierra XML waveforms unreadable: {_one_line(exc)}") from None
    return labels, stored


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


def _descendant(element, name: str):
    """The first element named `name` at any depth (as sierraecg looks its elements up), or None."""
    return next((e for e in element.iter() if isinstance(e.tag, str) and _local(e.tag) == name), None)


def _text(element) -> str | None:
    return None if element is None else element.text


def _number(path: Path, parent, name: str) -> float:
    return _positive_number(path, (_text(_find(parent, name)) or "").strip(), f"Sierra XML {name}")


def _whole(path: Path, text: str | None, what: str) -> int:
    if text is None:
        raise EcgReadError(path, f"Sierra XML lacks {what}")
    try:
        value = int(text.strip())
    except ValueError:
        raise EcgReadError(path, f"Sierra XML {what} is {text!r}, not a whole number") from None
    if value < 0:
        raise EcgReadError(path, f"Sierra XML {what} is {value}, not a count")
    return value
