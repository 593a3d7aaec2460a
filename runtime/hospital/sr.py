"""Our reading of a DICOM ECG as a DICOM Comprehensive SR (IHE Resting ECG Workflow: measurements and
interpretation beside the waveform), built with highdicom.

    path = write_sr(result.to_dict(), pydicom.dcmread("ecg.dcm"), "ecg-sr.dcm")

The SR is in the waveform's study (a new series), copies its Patient and Study modules, lists it as
evidence (Current Requested Procedure Evidence Sequence) and holds, under the root CONTAINER
(11524-6, LN, "EKG study"), observed by the device "GEM" (TID 1002/1004: the bundle id and LLM type):

| item | concept | what |
|---|---|---|
| COMPOSITE | (121112, DCM, "Source of Measurement") | the waveform read |
| CONTAINER | (122158, DCM, "ECG Global Measurements") | our measurements, one NUM each (`MEASUREMENT_CODES`) |
| CONTAINER | (122158, DCM, "ECG Global Measurements") | the cart's own, with the cart as device observer, and its statements as TEXT (121071, DCM, "Finding") |
| TEXT | (121073, DCM, "Impression") | the model's text |
| CONTAINER | (grounding, 99GEM, ...) | per number the text states: quantity, stated, measured, verdict (and the device's value, tolerance) |
| CONTAINER | (diagnoses, 99GEM, ...) | per finding the text states: finding, statement, verdict, the evidence (and the verdict on the device's numbers) |
| TEXT, CONTAINER | (model-text, 99GEM), (revisions, 99GEM, ...) | where a rhythm statement was revised (`--revise-rhythm`): the model's own text, and per revision its words, what replaced them and why |

Measurements go by MDC codes, as DICOM's CIDs 3227-3229 name them (carts' older SCP-ECG codes, which
`readers.dicom.SCPECG_MEASUREMENTS` reads, are what those CIDs replaced), heart rate by LOINC 8867-4.
Units are UCUM (`ms`, `/min`, `deg`). The report is PRELIMINARY and UNVERIFIED: a machine reading awaiting
a physician's over-read. 99GEM is our local coding scheme (DICOM's "99" prefix), declared in the Coding
Scheme Identification Sequence. highdicom is the `hospital` extra; it is imported when an SR is written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import NamedTuple

from ..thread_warnings import caught_warnings
from .ecg_dicom import MANUFACTURER, save_dataset


class MeasurementCode(NamedTuple):
    key: str                          # our key: Measurements, DeviceReport, GroundingItem.quantity
    mdc: tuple[str, str] | None       # ISO/IEEE 11073-10101 (MDC) code, meaning: DICOM CID 3227/3228/3229
    loinc: tuple[str, str] | None     # LOINC code, long common name, where one is verified (see hl7.py)
    unit: tuple[str, str]             # UCUM code, meaning


# Codes as DICOM PS3.16 (pydicom.sr.codedict) and LOINC name them; tests check the MDC ones against pydicom.
MEASUREMENT_CODES = {m.key: m for m in (
    MeasurementCode("hr_bpm", None, ("8867-4", "Heart rate"), ("/min", "per minute")),
    MeasurementCode("rr_ms", ("2:16168", "RR interval global"), None, ("ms", "millisecond")),
    MeasurementCode("pr_ms", ("2:15872", "PR interval global"), ("8625-6", "P-R interval"), ("ms", "millisecond")),
    MeasurementCode("p_ms", ("2:16184", "P duration global"), None, ("ms", "millisecond")),
    MeasurementCode("qrs_ms", ("2:16156", "QRS duration global"), ("8633-0", "QRS duration"), ("ms", "millisecond")),
    MeasurementCode("qt_ms", ("2:16160", "QT interval global"), ("8634-8", "Q-T interval"), ("ms", "millisecond")),
    MeasurementCode("qtc_bazett_ms", ("2:15880", "QTc global using Bazett formula"),
                    ("76635-2", "Q-T interval corrected by Bazett formula"), ("ms", "millisecond")),
    MeasurementCode("qtc_fridericia_ms", ("2:15892", "QTc global using Fredericia formula"),
                    ("76634-5", "Q-T interval corrected by Fridericia formula"), ("ms", "millisecond")),
    MeasurementCode("qtc_ms", ("2:15876", "QTc interval global"), ("8636-3", "Q-T interval corrected"),
                    ("ms", "millisecond")),
    MeasurementCode("p_axis_deg", ("2:16128", "P Axis"), ("8626-4", "P wave axis"), ("deg", "degree")),
    MeasurementCode("qrs_axis_deg", ("2:16132", "QRS axis"), ("8632-2", "QRS axis"), ("deg", "degree")),
    MeasurementCode("t_axis_deg", ("2:16136", "T axis"), None, ("deg", "degree")),
)}

LOCAL_SCHEME = "99GEM"
# local concepts: code -> meaning
LOCAL_CODES = {"grounding": "Grounding of the stated numbers", "grounding-item": "Stated number",
               "quantity": "Quantity", "stated": "Stated value", "measured": "Measured value",
               "verdict": "Verdict", "tolerance": "Tolerance", "device-value": "Device value",
               "device-verdict": "Verdict against the device", "reason": "Reason",
               "not-measured": "Not measurable", "quality-flag": "Signal quality flag",
               "diagnoses": "Grounding of the stated diagnoses", "diagnosis-item": "Stated diagnosis",
               "finding": "Finding", "statement": "Statement", "model-text": "The model's own text, before revision",
               "revisions": "Statements revised against the measurements", "revision-item": "Revised statement",
               "revised": "Revised to"}
REPORT_TITLE = ("11524-6", "LN", "EKG study")
SR_SERIES_NUMBER = 900                # SRs we write sort after the cart's series
REQUIRED_SOURCE = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")


def measurement_concept(key: str):
    """The coded concept a measurement key goes by in DICOM: MDC where DICOM names one, else LOINC."""
    from highdicom.sr import CodedConcept

    m = MEASUREMENT_CODES[key]
    value, meaning = m.mdc or m.loinc
    return CodedConcept(value, "MDC" if m.mdc else "LN", meaning)


# the patient and study elements the SR and the ORU copy, each of value multiplicity 1 in DICOM
SINGLE_VALUED = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName")


def source_problems(source) -> list[str]:
    """Why `write_sr` would refuse `source` (a waveform's pydicom Dataset): the elements an SR must reference,
    missing or not UIDs, and the patient and study elements it copies holding more than one value; [] when it can
    be reported. A listener asks before it acknowledges the waveform."""
    from pydicom.multival import MultiValue

    problems = []
    for name in REQUIRED_SOURCE:
        value = str(source.get(name, "") or "")
        if not value:
            problems.append(f"no {name}")
        elif len(value) > 64 or not all(part.isdigit() for part in value.split(".")):
            problems.append(f"{name} {value[:80]!r} is not a UID")
    for name in SINGLE_VALUED:                        # a backslash made two values: the SR's and HL7's copies failed
        value = source.get(name)
        if isinstance(value, MultiValue) and len(value) > 1:
            problems.append(f"{name} holds {len(value)} values (DICOM allows one)")
    return problems


def write_sr(result: dict, source, path: str | Path, mode: int | None = None) -> Path:
    """Write `result` (`Result.to_dict()`) as a Comprehensive SR beside `source` (the waveform's pydicom
    Dataset) to `path`, atomically; returns the path. `mode`: the file's permission bits."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import ComprehensiveSR
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    missing = [name for name in REQUIRED_SOURCE if not source.get(name)]
    if missing:
        raise ValueError(f"source dataset lacks {', '.join(missing)}: an SR must reference its waveform")
    evidence = Dataset()                              # the source's elements, plus the absent type 2 ones
    for element in source:                            # (copy.copy would share, and so change, its elements)
        evidence.add(element)
    for name in _TYPE2:
        if name not in evidence:
            setattr(evidence, name, "")
    now = dt.datetime.now()
    with caught_warnings():             # the hospital's patient name is copied as it is, one component or not:
        sr = ComprehensiveSR(           # highdicom's warning that it is "unlikely to represent ..." is dropped
            evidence=[evidence], content=_content(result, source), series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
            series_description="GEM ECG interpretation (preliminary)", manufacturer_model_name="GEM",
            software_versions=f"{result.get('bundle_id', '')} {result.get('quant', '')}".strip(),
            content_date=now.date(), content_time=now.time(), specific_character_set="ISO_IR 192",
            coding_schemes=[CodingSchemeIdentificationItem(
                LOCAL_SCHEME, name="gem-edge local codes", responsible_organization=MANUFACTURER)])
    return save_dataset(sr, Path(path), mode)


def _content(result: dict, source):
    from highdicom.sr import (CodedConcept, CompositeContentItem, ContainerContentItem,
                              DeviceObserverIdentifyingAttributes, ObserverContext, RelationshipTypeValues,
                              TextContentItem)
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    contains = RelationshipTypeValues.CONTAINS
    root = ContainerContentItem(CodedConcept(REPORT_TITLE[0], REPORT_TITLE[1], REPORT_TITLE[2]))
    gem = DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["gem-edge", str(result.get("bundle_id", ""))]), name="GEM",
        manufacturer_name=MANUFACTURER, model_name=f"GEM bundle {result.get('bundle_id', '?')} "
                                                   f"({result.get('quant', '?')})")
    items = list(ObserverContext(codes.cid270.Device, gem))
    # COMPOSITE, not WAVEFORM: highdicom cannot read a WAVEFORM item back (0.28: no class for it)
    items.append(CompositeContentItem(codes.DCM.SourceOfMeasurement, source.SOPClassUID, source.SOPInstanceUID,
                                      relationship_type=contains))
    items.append(_measurements(result.get("measurements") or {}))
    device = result.get("device")
    if device:
        items.append(_device(device, source))
    items.append(TextContentItem(codes.DCM.Impression, result.get("text") or "(no text)", relationship_type=contains))
    if result.get("grounding"):
        items.append(_grounding(result["grounding"]))
    if result.get("diagnoses"):
        items.append(_diagnoses(result["diagnoses"]))
    if result.get("revisions"):
        items.append(_text(_local("model-text"), result.get("model_text") or "(no text)"))
        items.append(_containers("revisions", "revision-item", [
            [_text(_local("statement"), r["original"]), _text(_local("revised"), r["revised"] or "(no rhythm named)"),
             _text(_local("reason"), r["reason"])] for r in result["revisions"]]))
    root.ContentSequence = items
    return root


def _local(code: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(code, LOCAL_SCHEME, LOCAL_CODES[code])


def _num(concept, key: str, value: float):
    from highdicom.sr import CodedConcept, NumContentItem, RelationshipTypeValues

    unit = MEASUREMENT_CODES[key].unit if key in MEASUREMENT_CODES else ("1", "no units")
    return NumContentItem(concept, float(value), CodedConcept(unit[0], "UCUM", unit[1]),
                          relationship_type=RelationshipTypeValues.CONTAINS)


def _text(concept, value: str):
    from highdicom.sr import RelationshipTypeValues, TextContentItem

    return TextContentItem(concept, str(value), relationship_type=RelationshipTypeValues.CONTAINS)


def _measurements(meas: dict):
    """Ours: a NUM per measured key; a TEXT per key we could not measure (with the reason); quality flags."""
    from highdicom.sr import ContainerContentItem, RelationshipTypeValues
    from pydicom.sr.codedict import codes

    box = ContainerContentItem(codes.DCM.ECGGlobalMeasurements, relationship_type=RelationshipTypeValues.CONTAINS)
    quality = meas.get("quality") or {}
    reasons = quality.get("reasons") or {}
    items = []
    for key in MEASUREMENT_CODES:
        if key not in meas:
            continue
        if meas[key] is None:
            items.append(_text(_local("not-measured"), f"{key}: {reasons.get(key, 'not measurable')}"))
        else:
            items.append(_num(measurement_concept(key), key, meas[key]))
    items += [_text(_local("quality-flag"), flag) for flag in quality.get("flags") or []]
    box.ContentSequence = items
    return box


def _device(device: dict, source):
    """The cart's measurements and statements, observed by the cart (TID 1004 from the file's equipment)."""
    from highdicom.sr import (ContainerContentItem, DeviceObserverIdentifyingAttributes, ObserverContext,
                              RelationshipTypeValues)
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    box = ContainerContentItem(codes.DCM.ECGGlobalMeasurements, relationship_type=RelationshipTypeValues.CONTAINS)
    vendor, model = device.get("vendor") or "", device.get("model") or ""
    serial = str(source.get("DeviceSerialNumber", "") or "")
    cart = DeviceObserverIdentifyingAttributes(
        uid=str(source.get("DeviceUID", "") or generate_uid(entropy_srcs=[vendor, model, serial])),
        name=model or vendor or "ECG cart", manufacturer_name=vendor or None, model_name=model or None,
        serial_number=serial or None)
    items = list(ObserverContext(codes.cid270.Device, cart))
    for key, value in (device.get("measurements") or {}).items():
        if key in MEASUREMENT_CODES and value is not None:
            items.append(_num(measurement_concept(key), key, value))
    items += [_text(codes.DCM.Finding, s) for s in device.get("statements") or []]
    box.ContentSequence = items
    return box


def _grounding(grounding: list[dict]):
    """One CONTAINER per number the text states: what it said, what was measured, and the verdict."""
    return _containers("grounding", "grounding-item", [_grounding_parts(g) for g in grounding])


def _grounding_parts(g: dict) -> list:
    key = g["quantity"]
    parts = [_text(_local("quantity"), key), _num(_local("stated"), key, g["stated"])]
    if g.get("measured") is not None:
        parts.append(_num(_local("measured"), key, g["measured"]))
    parts.append(_text(_local("verdict"), g["verdict"]))
    if g.get("tolerance") is not None:
        parts.append(_num(_local("tolerance"), key, g["tolerance"]))
    if g.get("device") is not None:
        parts.append(_num(_local("device-value"), key, g["device"]))
    if g.get("device_verdict"):
        parts.append(_text(_local("device-verdict"), g["device_verdict"]))
    if g.get("reason"):
        parts.append(_text(_local("reason"), g["reason"]))
    return parts


def _diagnoses(verdicts: list[dict]):
    """One CONTAINER per finding the text states: the words, the finding, the verdict against its criterion and
    the measured evidence (the criterion's source is in gem_runtime.diagnosis.criteria)."""
    return _containers("diagnoses", "diagnosis-item", [
        [_text(_local("finding"), v["name"]), _text(_local("statement"), v["statement"]),
         _text(_local("verdict"), v["verdict"]), _text(_local("reason"), v["reason"] or "-")]
        + ([_text(_local("device-verdict"), v["device_verdict"])] if v.get("device_verdict") else [])
        for v in verdicts])


def _containers(name: str, item_name: str, items: list[list]):
    """A CONTAINER `name` holding one CONTAINER `item_name` per list of content items."""
    from highdicom.sr import ContainerContentItem, RelationshipTypeValues

    contains = RelationshipTypeValues.CONTAINS
    box = ContainerContentItem(_local(name), relationship_type=contains)
    children = []
    for parts in items:
        item = ContainerContentItem(_local(item_name), relationship_type=contains)
        item.ContentSequence = parts
        children.append(item)
    box.ContentSequence = children
    return box
