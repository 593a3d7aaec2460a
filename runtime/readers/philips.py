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

1.04 and 1.04.01 (PageWriter TC / Touch, written in UTF-16) name the resolution `resolution` and keep the
device's numbers in `interpretation/globalmeasurements` (`print`, `qrsdur`, `qtint`, `qtcb`, ...) where 1.03 has
`signalresolution` and `interpretationmeasurements` (`meanprint`, ...). The cart's per-lead quality states
(`leadmeasurement/leadqualitystates/inops/inop`: a lead off from `starttime` for `duration` ms) go to the lead
checks, so a lead the device marks off is named, and a record with fewer usable leads is refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import EcgReadError, one_line
from .checks import (
    check_channels,
    check_duration,
    check_fs,
    check_fs_agrees,
    kept_note,
    kept_samples,
    plausible_gain,
    positive_number,
)
from .leads import finish, normalize_lead_name, plan_leads
from .record import DeviceReport, EcgRecord, patient_sex
from .xli import XliError, decode_waveforms
from .xmlread import descendant, find, findall, parse, root_pattern, text, xml_root

ROOT = b"restingecgdata"
_ROOT_TAG = root_pattern("restingecgdata")
DOCUMENT_TYPES = ("SierraECG", "PhilipsECG")
DOCUMENT_VERSIONS = ("1.03", "1.04", "1.04.01", "1.04.02")
# acquisitiontype -> its channels' names, for a <parsedwaveforms> without leadlabels (others: "Channel k")
DEFAULT_LABELS = dict.fromkeys(("STD-12", "10-WIRE"), ("I", "II", "III", "aVR", "aVL", "aVF",
                                                      "V1", "V2", "V3", "V4", "V5", "V6"))

# the device's measurements (ms, bpm, degrees) -> our key: 1.03's interpretationmeasurements, then 1.04's
# globalmeasurements (a document has one of them; QTc is Bazett's in both)
DEVICE_MEASUREMENTS = {"interpretationmeasurements": {
                           "heartrate": "hr_bpm", "meanprint": "pr_ms", "meanqrsdur": "qrs_ms", "meanqtint": "qt_ms",
                           "meanqtc": "qtc_ms", "pfrontaxis": "p_axis_deg", "qrsfrontaxis": "qrs_axis_deg",
                           "tfrontaxis": "t_axis_deg"},
                       "globalmeasurements": {
                           "heartrate": "hr_bpm", "rrint": "rr_ms", "print": "pr_ms", "qrsdur": "qrs_ms",
                           "qtint": "qt_ms", "qtcb": "qtc_ms", "pfrontaxis": "p_axis_deg",
                           "qrsfrontaxis": "qrs_axis_deg", "tfrontaxis": "t_axis_deg"}}


def is_philips(head: bytes) -> bool:
    """An XML document (UTF-8 or UTF-16) whose root element is <restingecgdata> (within the first bytes)."""
    return xml_root(_ROOT_TAG, head)


def read_philips(path: Path, fs_arg: float | None) -> EcgRecord:
    root = parse(path, "Philips Sierra XML")
    signal_info = find(root, "dataacquisition/signalcharacteristics")
    if signal_info is None:
        raise EcgReadError(path, "Sierra XML lacks dataacquisition/signalcharacteristics")
    fs = _number(path, signal_info, "samplingrate")
    resolution = "signalresolution" if find(signal_info, "signalresolution") is not None else "resolution"
    mv_per_count = plausible_gain(path, _number(path, signal_info, resolution) / 1000, f"Sierra XML {resolution}")
    check_fs_agrees(path, fs, fs_arg)
    check_fs(path, fs)
    _check_version(path, root)
    labels, stored = _waveforms(path, root, signal_info, fs)          # stored: (n, N) int16
    check_duration(path, stored.shape[1], fs)
    plan = plan_leads(path, labels)
    n = kept_samples(stored.shape[1], fs)
    signal = stored[list(plan.channels), :n].astype(np.float64) * mv_per_count   # (n_used, N) mV
    limits = [(-32768 * mv_per_count, 32767 * mv_per_count)] * len(plan.channels)       # int16 samples
    return finish(path, signal, fs, plan, list(plan.warnings) + kept_note(stored.shape[1], fs),
                  device=_device_report(root), device_off=_leads_off(root), adc_limits=limits,
                  sex=patient_sex(text(find(root, "patient/generalpatientdata/sex"))))   # Male, Female, Unknown


def _check_version(path: Path, root) -> None:
    info = descendant(root, "documentinfo")
    kind, version = (text(find(info, name)) for name in ("documenttype", "documentversion"))
    if not kind or not version:
        raise EcgReadError(path, "Sierra XML lacks documentinfo/documenttype and documentversion")
    if kind not in DOCUMENT_TYPES or version not in DOCUMENT_VERSIONS:
        raise EcgReadError(path, f"Sierra XML document {kind} {version} is not supported "
                                 f"({' or '.join(DOCUMENT_TYPES)} {', '.join(DOCUMENT_VERSIONS)})")


def _waveforms(path: Path, root, signal_info, fs: float) -> tuple[list[str], np.ndarray]:
    """The lead labels and the decoded <parsedwaveforms> (n_labels, N) int16, its attributes read as sierraecg
    reads them."""
    waveforms = descendant(root, "parsedwaveforms")
    if waveforms is None:
        raise EcgReadError(path, "Sierra XML lacks waveforms/parsedwaveforms")
    encoding = waveforms.get("dataencoding")
    if encoding != "Base64":
        raise EcgReadError(path, "Sierra XML parsedwaveforms lacks dataencoding" if encoding is None else
                           f"Sierra XML waveform encoding {encoding!r} is not supported (Base64)")
    if waveforms.get("leadlabels", ""):          # the first numberofleads of them
        count = _whole(path, waveforms.get("numberofleads"), "parsedwaveforms numberofleads")
        check_channels(path, count, "Sierra XML parsedwaveforms numberofleads")
        labels = waveforms.get("leadlabels").split(" ")[:count]
    else:                                        # the acquisition type's channel names
        count = _whole(path, text(find(signal_info, "numberchannelsallocated")), "numberchannelsallocated")
        check_channels(path, count, "Sierra XML numberchannelsallocated")
        names = DEFAULT_LABELS.get(text(find(signal_info, "acquisitiontype")), ())
        labels = [names[k] if k < len(names) else f"Channel {k + 1}" for k in range(count)]
    duration_ms = _whole(path, waveforms.get("durationperchannel"), "parsedwaveforms durationperchannel")
    compression = waveforms.get("compressmethod", waveforms.get("compression", "Uncompressed"))
    try:            # the decoder checks declared sizes against the payload before it allocates
        stored = decode_waveforms(waveforms.text or "", compression, labels, int(duration_ms * (fs / 1000)))
    except XliError as exc:
        raise EcgReadError(path, f"Sierra XML waveforms unreadable: {one_line(exc)}") from None
    return labels, stored


def _device_report(root) -> DeviceReport:
    machine = find(root, "dataacquisition/machine")
    interpretation = find(root, "interpretations/interpretation")
    measurements, statements, program = {}, [], ""
    if interpretation is not None:
        program = " ".join(filter(None, ("Philips DXL", interpretation.get("criteriaversion"),
                                         interpretation.get("customcriteriaversion"))))
        for block, names in DEVICE_MEASUREMENTS.items():
            values = find(interpretation, block)
            for tag, key in names.items():
                try:
                    value = float(text(find(values, tag)) or "nan")
                except ValueError:             # "Failed", "Indeterminate": the device could not measure it
                    continue
                if math.isfinite(value) and key not in measurements:
                    measurements[key] = value
        for statement in findall(interpretation, "statement"):
            left, right = text(find(statement, "leftstatement")), text(find(statement, "rightstatement"))
            if left:
                statements.append(f"{left} ({right})" if right else left)
    return DeviceReport(vendor="Philips", model=text(machine), program=program,
                        measurements=measurements, statements=tuple(statements))


def _leads_off(root) -> dict[str, tuple[float, str]]:
    """The cart's own leads-off marking: {GEM lead: (seconds it marks the lead inop, what it says)}."""
    block = descendant(root, "leadmeasurements")
    off = {}
    for measurement in findall(block, "leadmeasurement"):
        named = normalize_lead_name(measurement.get("leadname", ""))
        total = 0.0
        for inop in findall(find(measurement, "leadqualitystates/inops"), "inop"):
            try:
                total += max(0.0, float(inop.get("duration", "0"))) / 1000
            except ValueError:
                continue
        if named and math.isfinite(total) and total > 0:
            off[named[0]] = (total, f"the device marks it inop for {total:.1f} s")
    return off


def _number(path: Path, parent, name: str) -> float:
    return positive_number(path, text(find(parent, name)), f"Sierra XML {name}")


def _whole(path: Path, value: str | None, what: str) -> int:
    if value is None:
        raise EcgReadError(path, f"Sierra XML lacks {what}")
    try:
        number = int(value.strip())
    except ValueError:
        raise EcgReadError(path, f"Sierra XML {what} is {value!r}, not a whole number") from None
    if number < 0:
        raise EcgReadError(path, f"Sierra XML {what} is {number}, not a count")
    return number
