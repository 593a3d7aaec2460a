"""The formats read with ecgdatakit's parsers (GE MUSE XML, HL7 aECG, SCP-ECG): one path from its `ECGRecord`
to our checked `EcgRecord`, and the device's measurements and statements into a `DeviceReport`. The patient's sex
is ecgdatakit's reading of the format's own field ("M", "F", else "U"): MUSE PatientDemographics/Gender (MALE,
FEMALE), aECG administrativeGenderCode/@code (M, F), SCP-ECG section 1 tag 8 (1 male, 2 female).

ecgdatakit's wheel is ~49 MB (it ships a denoising network we do not use; 64 MB installed), so it is the
`formats` extra, not a base dependency: pip install 'gem-edge[formats]'. Its import costs ~150 ms here.
Without it, a file of one of these formats is refused in one line that names the install.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import EcgReadError, one_line
from ..thread_warnings import caught_warnings
from .checks import kept_note, kept_samples, one_rate_and_length, plausible_gain, size_text, unit_scale
from .leads import finish, plan_leads
from .record import DeviceReport, EcgRecord, patient_sex
from .xmlread import check_cost, utf8_bytes, xml_encoding

# ecgdatakit parses an XML document whole (an HL7 aECG of 10 MB, the sample's digits repeated: 0.65 s, 51 MB);
# a 10 s 12-lead aECG or MUSE file is 0.1-0.6 MB, so this bounds the time to about a second
MAX_XML_BYTES = 16 * 2**20
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
    xml: bool = False             # an XML format: its element count is checked before ecgdatakit parses it
    # a lead the format must carry a scale for: the message when it has none (ecgdatakit reads it as 1.0)
    no_scale: str = ""


def read_with_ecgdatakit(path: Path, fs_arg: float | None, fmt: EcgdatakitFormat, parse_path: Path | None = None,
                         notes: list[str] | tuple[str, ...] = ()) -> EcgRecord:
    """`path` read by ecgdatakit (from `parse_path`, a corrected copy, where given), checked as every reader's
    output is; `notes` are warnings the caller adds."""
    try:
        from ecgdatakit import ECGDataKitError, exceptions

        parser_cls = getattr(importlib.import_module(f"ecgdatakit.parsing.parsers.{fmt.module}"), fmt.parser)
    except ImportError:
        raise EcgReadError(path, _INSTALL.format(name=fmt.name)) from None
    if fmt.xml and parse_path is None:
        data = path.read_bytes()
        if len(data) > MAX_XML_BYTES:
            raise EcgReadError(path, f"{fmt.name} of {size_text(len(data))}: more than a resting ECG's document "
                                     f"({size_text(MAX_XML_BYTES)} at most; ecgdatakit parses it whole)")
        check_cost(path, data, fmt.name)
        if xml_encoding(data[:4])[0] != "utf-8":     # ecgdatakit reads UTF-16 only with a BOM: give it UTF-8
            with tempfile.TemporaryDirectory(prefix="gem-xml-") as folder:
                copy = Path(folder) / path.name
                copy.write_bytes(utf8_bytes(path, data))
                return read_with_ecgdatakit(path, fs_arg, fmt, copy, notes)
    try:
        with caught_warnings() as caught, np.errstate(all="ignore"):
            record = parser_cls().parse(Path(parse_path or path)).to_physical()
    except (ECGDataKitError, ValueError) as exc:
        said = one_line(exc).replace(str(parse_path), str(path)) if parse_path else one_line(exc)
        raise EcgReadError(path, f"{fmt.name} unreadable: {said}") from None
    damaged = getattr(exceptions, fmt.refuse_warning) if fmt.refuse_warning else ()
    for w in caught:
        if damaged and issubclass(w.category, damaged):
            raise EcgReadError(path, f"{fmt.name} damaged: {one_line(w.message)}")
    leads = record.leads
    if not leads:
        raise EcgReadError(path, f"{fmt.name} holds no rhythm waveform")
    raw = [lead.label for lead in leads if lead.is_raw]
    if raw:
        raise EcgReadError(path, f"leads {', '.join(raw)} have no amplitude units: samples are uncalibrated")
    plan = plan_leads(path, [lead.label for lead in leads])
    used = [leads[c] for c in plan.channels]
    fs, n = one_rate_and_length(path, [lead.sampling_rate for lead in used], [len(lead.samples) for lead in used],
                                fs_arg)
    scales = [unit_scale(path, lead.label, lead.resolution_unit or lead.units) for lead in used]
    for lead, scale in zip(used, scales):
        if fmt.no_scale and not lead.adc_resolution:
            raise EcgReadError(path, fmt.no_scale.format(lead=lead.label))
        if lead.resolution:
            plausible_gain(path, float(lead.resolution) * scale, f"{fmt.name} lead {lead.label} resolution")
    kept = kept_samples(n, fs)
    signal = np.stack([np.asarray(lead.samples[:kept], np.float64) for lead in used]) * np.asarray(scales)[:, None]
    said = [f"{fmt.name}: {one_line(w.message)}" for w in caught]
    if parse_path is not None:
        said = [note.replace(str(parse_path), str(path)) for note in said]
    return finish(path, signal, fs, plan, list(plan.warnings) + list(notes) + list(dict.fromkeys(said))
                  + kept_note(n, fs),
                  device=_device_report(record, fmt), sex=patient_sex(record.patient.sex))


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
