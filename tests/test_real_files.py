"""Every file real devices wrote (../shared/data/real, see its README) reads with the device's own values, or is
refused in one line that says what it is. The XML files also read the same in every encoding a cart may use."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gem_runtime.constants import LEADS
from gem_runtime.readers import EcgReadError, read_ecg

# file -> (rate, samples, {device measurement: value}, a statement the device wrote, a warning we add)
READS = {
    "philips/129DYNRG.xml": (500, 5500, {"hr_bpm": 72, "pr_ms": 151, "qtc_ms": 422}, ">>> Acute MI <<<", None),
    "philips/3191723_ZZDEMOPTONLY_1-04_orig.xml": (
        500, 5500, {"hr_bpm": 84, "pr_ms": 144, "qrs_ms": 84, "qt_ms": 352, "qtc_ms": 417, "qrs_axis_deg": 78},
        "PROBABLE LEFT VENTRICULAR HYPERTROPHY ((RaVL+SV3)xQRSd >280)", None),
    "philips/2020-5-18_15-48-11.xml": (
        500, 5500, {"hr_bpm": 64, "rr_ms": 938, "pr_ms": 164, "qrs_ms": 102, "qt_ms": 399, "qtc_ms": 412},
        "Sinus rhythm (normal P axis, V-rate 50-99)", None),
    "muse/muse-sinus.xml": (500, 5000, {"hr_bpm": 90, "pr_ms": 144, "qtc_ms": 460}, "Normal Sinus rhythm",
                            "derived III, aVR, aVL, aVF"),
    "muse/example1.xml": (500, 5000, {"hr_bpm": 48, "pr_ms": 138, "qrs_ms": 96}, None, "derived III"),
    "muse/example2.xml": (500, 5000, {"hr_bpm": 65, "pr_ms": 184, "qt_ms": 420}, None, "derived III"),
    "aecg/hl7_example_aecg.xml": (500, 5000, {"pr_ms": 148, "qrs_ms": 120, "qt_ms": 420, "qrs_axis_deg": -61},
                                  None, None),
    "cardiosoft/cardiosoft_example.xml": (
        500, 5000, {"hr_bpm": 50, "rr_ms": 1202, "pr_ms": 174, "qrs_ms": 92, "qt_ms": 440, "qtc_ms": 401,
                    "p_axis_deg": 56, "qrs_axis_deg": 55, "t_axis_deg": 45}, "Sinus bradycardia", None),
    "dicom/ge_mv360.dcm": (500, 5000, None, None, None),
    "scp/ECG_20070321_110542_191010101010.SCP": (600, 6000, {"hr_bpm": 75, "pr_ms": 157, "qrs_ms": 88, "qt_ms": 360},
                                                 "sinusrytm", "derived III, aVR, aVL, aVF"),
    "scp/ecgsoft_demo.scp": (1000, 10000, None, None, "numbers samples from 0"),
}
# file -> what its one-line refusal must say
REFUSED = {
    "philips/129ECORG_leads_off.xml": "12 leads without usable signal (I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, "
                                      "V6: off (the device marks it inop for 10.6 s))",
    "scp/ECG_20060620_112352_197001138994.SCP": "V3R, V7 in place of V3, V5: a pediatric lead set",
    "scp/healforce_62_nonstandard.SCP": "an SCP-ECG-like file that does not follow EN 1064",
    "other/cortrium_holter_3lead.edf": "an EDF recording with 3 ECG channels (ECG1, ECG2, ECG3) and 5 others: a "
                                       "Holter or patch recording, not a 12-lead ECG",
    "other/contec_native.ECG": "a Contec ECG90A native recording",
    "labelled/JS20004.hea": "flat leads V2, V4, V6",        # the Chapman-Shaoxing file holds zeros there
    "labelled/JS20008.hea": "flat leads V2, V4, V6",
}


@pytest.fixture(scope="module")
def real(shared_data):
    return shared_data / "real"


def _json_clean(record) -> None:
    """What --json would print of the record is valid JSON: no NaN or Infinity anywhere."""
    json.dumps({"device": record.device.to_dict() if record.device else None, "warnings": list(record.warnings),
                "lead_issues": record.lead_issues, "fs": record.fs}, allow_nan=False)
    assert not np.isinf(record.signal).any()


@pytest.mark.parametrize("name", sorted(READS))
def test_each_real_cart_file_reads_with_the_device_values(real, name):
    fs, n, measured, statement, warning = READS[name]
    record = read_ecg(real / name)
    assert record.leads == LEADS and record.fs == fs and record.signal.shape == (12, n)
    assert 0.3 < float(np.nanmax(np.abs(record.signal))) < 10          # mV, a real ECG's range
    _json_clean(record)
    if measured is None:
        assert record.device is None or not record.device.measurements
    else:
        for key, value in measured.items():
            assert record.device.measurements[key] == pytest.approx(value), (key, record.device.measurements)
    if statement:
        assert statement in record.device.statements, record.device.statements
    if warning:
        assert any(warning in w for w in record.warnings), record.warnings
    assert record.lead_issues == {}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_each_non_ecg_or_unusable_real_file_is_refused_in_one_line(real, name):
    with pytest.raises(EcgReadError) as e:
        read_ecg(real / name)
    message = str(e.value)
    assert REFUSED[name] in message and name.split("/")[1] in message and "\n" not in message, message


def test_every_labelled_and_ludb_record_reads(real):
    names = sorted(p for folder in ("ludb", "labelled") for p in (real / folder).glob("*.hea"))
    assert len(names) >= 120
    for header in names:
        if f"labelled/{header.name}" in REFUSED:
            continue
        record = read_ecg(header)
        assert record.signal.shape[0] == 12 and record.duration_s >= 10, header.name


ENCODINGS = {"utf-8-sig": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-16-le no BOM": None,
             "utf-16-be no BOM": None, "utf-32-le": b"\xff\xfe\x00\x00", "utf-16-le no declaration": b"\xff\xfe",
             "utf-16-be no BOM no declaration": None}


@pytest.mark.parametrize("name", ["philips/129DYNRG.xml", "philips/2020-5-18_15-48-11.xml", "muse/muse-sinus.xml",
                                  "aecg/hl7_example_aecg.xml", "cardiosoft/cardiosoft_example.xml"])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_xml_reads_the_same_in_every_encoding(real, tmp_path, name, encoding):
    """Found by content and read alike in UTF-8 (with a BOM), UTF-16 LE/BE with and without a BOM, UTF-32,
    with an XML declaration saying so or without one."""
    source = read_ecg(real / name)
    raw = (real / name).read_bytes()
    text = raw.decode("utf-16") if raw.startswith(b"\xff\xfe") else raw.decode("latin-1")
    codec = encoding.split()[0].replace("-sig", "")
    declared = codec.rsplit("-", 1)[0] if codec.startswith("utf-16") or codec.startswith("utf-32") else codec
    head, sep, rest = text.partition("?>") if text.lstrip().startswith("<?xml") else ("", "", text)
    head = head.replace('"ISO-8859-1"', '"utf-8"').replace('"UTF-8"', '"utf-8"').replace('"utf-16"', '"utf-8"')
    body = (head.replace('"utf-8"', f'"{declared}"') + sep + rest) if sep and "declaration" not in encoding else rest
    if encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + body.encode("utf-8")
    else:
        data = (ENCODINGS[encoding] or b"") + body.encode(codec)
    path = tmp_path / "copy.xml"
    path.write_bytes(data)
    record = read_ecg(path)
    np.testing.assert_array_equal(record.signal, source.signal)
    assert record.device == source.device
    assert math.isclose(record.fs, source.fs)
