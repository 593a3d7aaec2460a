"""DICOM waveform ECGs (12-lead ECG / General ECG IODs), decoded by pydicom."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from ..errors import EcgReadError, one_line
from .checks import (
    DEFAULT_MAX_BYTES,
    check_channels,
    check_duration,
    check_fs,
    check_fs_agrees,
    kept_note,
    kept_samples,
    plausible_gain,
    size_text,
    unit_scale,
)
from .leads import INDEPENDENT_LEADS, finish, normalize_lead_name, plan_leads
from .record import DeviceReport, EcgRecord, patient_sex

DICOM_MARKER = b"DICM"      # at byte 128, after the 128-byte preamble
DEFLATED = "1.2.840.10008.1.2.1.99"          # Deflated Explicit VR Little Endian (PS3.5 A.5)


def is_dicom(head: bytes) -> bool:
    """Does the file's head hold the DICM marker at byte 128?"""
    return head[128:132] == DICOM_MARKER


_DICOM_SAMPLE_TYPES = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}  # MB/AB (mu-law, A-law) are not decoded
_DICOM_GROUP_ELEMENTS = ("SamplingFrequency", "NumberOfWaveformChannels", "NumberOfWaveformSamples",
                         "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
                         "ChannelDefinitionSequence")
_DERIVED_GROUP_WORDS = ("MEDIAN", "BEAT", "DERIVED", "AVERAGE", "TEMPLATE")


def read_dicom(path: Path, fs_arg: float | None) -> EcgRecord:
    """12-lead ECG / General ECG waveform IODs: one multiplex group, converted by pydicom, then to mV (pydicom's
    warnings go into the record's warnings: read_ecg captures them)."""
    import pydicom
    from pydicom.waveforms.numpy_handler import multiplex_array

    _check_inflated_size(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise EcgReadError(path, f"not a readable DICOM file: {one_line(exc)}") from exc
    groups = ds.get("WaveformSequence")
    if not groups:
        raise EcgReadError(path, f"DICOM has no waveform (Modality {one_line(ds.get('Modality', '?'))[:80]}, "
                                 f"SOP class {getattr(ds.get('SOPClassUID'), 'name', '?')})")
    index = _choose_group(path, groups)
    group = groups[index]
    missing = [name for name in _DICOM_GROUP_ELEMENTS if name not in group]
    if missing:
        raise EcgReadError(path, f"waveform group {index} lacks {', '.join(missing)}")
    fs = float(group.SamplingFrequency)
    check_fs_agrees(path, fs, fs_arg)
    check_fs(path, fs)
    n_channels, n_samples = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    check_channels(path, n_channels, f"waveform group {index} NumberOfWaveformChannels")
    check_duration(path, n_samples, fs)
    sample_type, bits = str(group.WaveformSampleInterpretation), int(group.WaveformBitsAllocated)
    if sample_type not in _DICOM_SAMPLE_TYPES:
        raise EcgReadError(path, f"waveform sample interpretation {sample_type} is not supported")
    if bits not in (8, 16, 32, 64):
        raise EcgReadError(path, f"WaveformBitsAllocated {bits} is not supported (8, 16, 32 or 64)")
    expected, held = n_channels * n_samples * bits // 8, len(group.WaveformData)
    if held < expected:
        raise EcgReadError(path, f"waveform group {index} says {n_samples} samples x {n_channels} channels "
                                 f"({expected} bytes) but its data holds {held} bytes")
    channels = list(group.ChannelDefinitionSequence)
    if len(channels) != n_channels:
        raise EcgReadError(path, f"waveform group {index} says {n_channels} channels but defines {len(channels)}")

    plan = plan_leads(path, [_dicom_channel_name(ch, k) for k, ch in enumerate(channels)])
    scales = []
    for c in plan.channels:
        name = _dicom_channel_name(channels[c], c)
        if "ChannelSensitivity" not in channels[c]:
            raise EcgReadError(path, f"channel {c} ({name}) has no sensitivity: samples are uncalibrated")
        units = channels[c].get("ChannelSensitivityUnitsSequence")
        unit = units[0].get("CodeValue") if units else None
        if unit is None:
            raise EcgReadError(path, f"channel {c} has no sensitivity units")
        scales.append(unit_scale(path, name, unit))
        correction = float(channels[c].get("ChannelSensitivityCorrectionFactor", 1) or 1)
        plausible_gain(path, float(channels[c].ChannelSensitivity) * correction * scales[-1],
                       f"channel {c} ({name}) sensitivity")

    kept = kept_samples(n_samples, fs)           # pydicom converts only the samples kept
    if kept < n_samples:
        group.NumberOfWaveformSamples = kept
        group.WaveformData = bytes(group.WaveformData[:kept * n_channels * bits // 8])
    # pydicom applies raw * sensitivity * correction factor + baseline here; do not apply them again.
    physical = ds.waveform_array(index).T[list(plan.channels)]          # (n_used, N) in file units
    if "WaveformPaddingValue" in group:                                 # padded samples are missing data
        pad = int.from_bytes(group.WaveformPaddingValue, "little", signed=sample_type[0] == "S")
        raw = multiplex_array(ds, index, as_raw=True).T[list(plan.channels)]
        physical = np.where(raw == pad, np.nan, physical)
    signal = physical * np.asarray(scales)[:, None]                    # (n_used, N) mV
    return finish(path, signal, fs, plan, list(plan.warnings) + kept_note(n_samples, fs), device=device_report(ds),
                  adc_limits=_adc_limits(group, channels, plan.channels, scales, sample_type, bits),
                  sex=patient_sex(ds.get("PatientSex")))       # (0010,0040) CS: M, F or O (other)


def _adc_limits(group, channels, used, scales, sample_type: str, bits: int) -> list[tuple[float, float]]:
    """Each used channel's ADC range in mV, as pydicom converts a sample: raw x sensitivity x correction factor +
    baseline; the raw range from Waveform Bits Stored (else Allocated) and the sign of the interpretation."""
    stored = min(int(group.get("WaveformBitsStored", bits) or bits), bits)
    raw = (-(2 ** (stored - 1)), 2 ** (stored - 1) - 1) if sample_type.startswith("S") else (0, 2 ** stored - 1)
    limits = []
    for c, scale in zip(used, scales):
        k = float(channels[c].ChannelSensitivity) * float(channels[c].get("ChannelSensitivityCorrectionFactor", 1) or 1)
        base = float(channels[c].get("ChannelBaseline", 0) or 0)
        limits.append(tuple(sorted((r * k + base) * scale for r in raw)))
    return limits


def _dicom_channel_name(channel, k: int) -> str:
    """Channel Source code meaning ('Lead I (Einthoven)'), else Channel Label, else 'channel k'."""
    sources = channel.get("ChannelSourceSequence")
    if sources and sources[0].get("CodeMeaning"):
        return str(sources[0].CodeMeaning)
    return str(channel.get("ChannelLabel") or f"channel {k}")


def _check_inflated_size(path: Path) -> None:
    """A deflated dataset, inflated here with a bound (the readers' file limit) before pydicom inflates it whole (it
    would: a 1.1 MiB file held 1 GiB of zeros, 2.2 GB RSS to read; a file at the 200 MiB limit could hold ~200 GiB)."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
    except Exception:
        return                                          # dcmread says what is wrong with it
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise EcgReadError(path, "deflated DICOM without a file meta group length: where its dataset starts is unknown")
    with open(path, "rb") as f:
        f.seek(128 + 4 + 12 + int(group_length))       # preamble, DICM, the group length element, the group
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflated = 0
        while data := f.read(2**20):
            while data:                                 # counted 16 MiB at a time, none of it kept
                try:
                    inflated += len(inflater.decompress(data, 16 * 2**20))
                except zlib.error as exc:
                    raise EcgReadError(path, f"deflated DICOM dataset does not inflate: {exc}") from None
                if inflated > DEFAULT_MAX_BYTES:
                    raise EcgReadError(path, "its deflated dataset inflates to more than "
                                             f"{size_text(DEFAULT_MAX_BYTES)} (a compression bomb, or not an ECG)")
                data = inflater.unconsumed_tail


def _choose_group(path: Path, groups) -> int:
    """The first group with >= 8 ECG leads at the highest rate; median-beat/derived groups never."""
    candidates = []   # (index, fs, n_ecg_leads)
    for index, group in enumerate(groups):
        label = str(group.get("MultiplexGroupLabel", "")).upper()
        if any(word in label for word in _DERIVED_GROUP_WORDS):
            continue
        names = [_dicom_channel_name(ch, k) for k, ch in enumerate(group.get("ChannelDefinitionSequence", []))]
        n_ecg = sum(normalize_lead_name(name) is not None for name in names)
        candidates.append((index, float(group.get("SamplingFrequency", 0) or 0), n_ecg))
    if not candidates:
        raise EcgReadError(path, f"DICOM holds only median-beat/derived waveforms ({len(groups)} groups)")
    full = [c for c in candidates if c[2] >= len(INDEPENDENT_LEADS)]
    if full:
        return max(full, key=lambda c: (c[1], -c[0]))[0]
    return max(candidates, key=lambda c: (c[2], -c[0]))[0]   # fails the lead-set check with a clear list


# --- the cart's own findings (Waveform Annotation Sequence) ----------------------------------------------

# SCP-ECG codes (coding scheme SCPECG) of the global measurements carts write -> our keys
SCPECG_MEASUREMENTS = {"5.10.2.1-3": "rr_ms", "5.13.5-7": "pr_ms", "5.13.5-9": "qrs_ms", "5.13.5-11": "qt_ms",
                       "5.10.2.5-5": "qtc_ms", "5.10.3-11": "p_axis_deg", "5.10.3-13": "qrs_axis_deg",
                       "5.10.3-15": "t_axis_deg"}
_UNIT_SCALE = {("ms", "ms"): 1.0, ("s", "ms"): 1000.0, ("deg", "deg"): 1.0, ("/min", "bpm"): 1.0,
               ("{beats}/min", "bpm"): 1.0, ("bpm", "bpm"): 1.0}


def device_report(ds) -> DeviceReport | None:
    """Numeric annotations with an SCP-ECG code (or a heart-rate meaning) and the free-text statements."""
    annotations = ds.get("WaveformAnnotationSequence") or []
    measurements, statements = {}, []
    for a in annotations:
        text = a.get("UnformattedTextValue")
        if text and "ConceptNameCodeSequence" not in a:
            statements.append(" ".join(str(text).split()))
            continue
        codes, value = a.get("ConceptNameCodeSequence"), a.get("NumericValue")
        if not codes or value is None:
            continue                       # fiducial points (onsets / offsets per beat), not measurements
        code, meaning = str(codes[0].get("CodeValue", "")), str(codes[0].get("CodeMeaning", "")).lower()
        key = SCPECG_MEASUREMENTS.get(code) if codes[0].get("CodingSchemeDesignator") == "SCPECG" else None
        if key is None and ("heart rate" in meaning or "ventricular rate" in meaning):
            key = "hr_bpm"
        units = a.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "")) if units else ""
        want = "bpm" if key == "hr_bpm" else "deg" if key and key.endswith("_deg") else "ms"
        scale = _UNIT_SCALE.get((unit, want))
        if key is None or scale is None or key in measurements:
            continue
        try:
            measurements[key] = float(value) * scale
        except (TypeError, ValueError):
            continue
    if "hr_bpm" not in measurements and 0 < measurements.get("rr_ms", 0) < float("inf"):
        measurements["hr_bpm"] = round(60000.0 / measurements["rr_ms"], 1)     # the rate its RR implies
    if not measurements and not statements:
        return None
    return DeviceReport(vendor=str(ds.get("Manufacturer", "") or ""), model=str(ds.get("ManufacturerModelName", "") or ""),
                        program=str(ds.get("SoftwareVersions", "") or ""), measurements=measurements,
                        statements=tuple(statements))
