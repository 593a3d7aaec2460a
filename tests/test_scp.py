"""SCP-ECG through ecgdatakit: real ECGs written in the SCP-ECG layout (tests/scp_spec.py) read and measure as
their sources in each sample encoding, the device's section 7 and 8 come through, and damaged records are
refused in one line."""
import json
import struct

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from clirun import run_main, run_without
from malformed import assert_files_refused
from gem_runtime.cli import main
from gem_runtime.constants import LEADS
from gem_runtime.measure import MEASUREMENT_KEYS, measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
import scp_spec
from scp_spec import record, scp_ecg, section, section1, section3, section6, section7

DEVICE = {"hr_bpm": 82, "rr_ms": 732, "pr_ms": 164, "qrs_ms": 132, "qt_ms": 412, "qtc_ms": 481,
          "p_axis_deg": 58, "qrs_axis_deg": -95, "t_axis_deg": -68}


@pytest.fixture(scope="module")
def ptb_10s(ptb):
    return preprocess_ecg(read_ecg(ptb))[0]          # (12, 5000) mV at 500 Hz


@pytest.fixture(scope="module")
def dicom():
    return read_ecg(get_testdata_file("waveform_ecg.dcm"))          # real, 1000 Hz


def _measured(signal, fs):
    d = measure_ecg(signal, fs).to_dict()
    return {k: d[k] for k in MEASUREMENT_KEYS}


@pytest.mark.parametrize("mode", [0, 1, 2])           # amplitudes, first and second differences
def test_a_real_ecg_reads_and_measures_as_its_source(tmp_path, ptb_10s, mode):
    path = tmp_path / "ptb.scp"
    path.write_bytes(scp_ecg(ptb_10s, 500, nv_per_count=500, mode=mode))      # PTB's own step: 0.5 uV
    r = read_ecg(path)
    assert r.leads == LEADS and r.fs == 500.0 and r.signal.shape == (12, 5000) and r.warnings == ()
    assert np.abs(r.signal - ptb_10s).max() <= 0.00025 + 1e-6                  # half a step
    assert _measured(r.signal, 500) == _measured(ptb_10s, 500)


def test_the_dicom_carts_ecg_at_1000_hz_measures_as_its_source(tmp_path, dicom):
    path = tmp_path / "dicom.bin"                    # no .scp suffix: found by content
    path.write_bytes(scp_ecg(dicom.signal, dicom.fs, nv_per_count=1250))             # the cart's own 1.25 uV step
    r = read_ecg(path)
    assert r.fs == 1000.0 and r.signal.shape == dicom.signal.shape
    assert _measured(r.signal, r.fs) == _measured(dicom.signal, dicom.fs)


def test_eight_stored_leads_become_twelve(tmp_path, ptb_10s):
    path = tmp_path / "eight.scp"
    path.write_bytes(scp_ecg(ptb_10s, 500, leads=("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")))
    r = read_ecg(path)
    assert r.leads == LEADS and r.warnings == ("derived III, aVR, aVL, aVF from I and II (not stored in the file)",)


def test_the_devices_sections_7_and_8_come_through(tmp_path, ptb_10s, capsys):
    path = tmp_path / "ptb.scp"
    path.write_bytes(scp_ecg(ptb_10s, 500))
    d = read_ecg(path).device
    assert (d.vendor, d.model, d.program) == ("Mortara", "EL250", "2.1")
    assert d.measurements == DEVICE
    assert d.statements == scp_spec.STATEMENTS
    code, out, err = run_main(main, ["measure", str(path)], capsys)
    assert code == 0, err
    assert ("device: Mortara EL250 (2.1): HR 82 bpm | RR 732 ms | PR 164 ms | QRS 132 ms | QT 412 ms | QTc 481 ms"
            " | axis P/QRS/T 58/-95/-68 deg") in out
    assert "device says: Sinus rhythm\ndevice says: Inferior infarct, age undetermined" in out
    assert "device disagrees" not in out                    # the section 7 values are PTB's own, near enough
    code, out, err = run_main(main, ["measure", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["device"]["measurements"] == DEVICE


def test_a_device_without_a_p_wave_gives_no_pr_and_no_invented_rate(tmp_path, ptb_10s):
    counts = np.round(ptb_10s * 1e6 / 5000).astype(np.int64)
    boundaries = dict(scp_spec.BOUNDARIES, p_onset=scp_spec.UNDEFINED, p_offset=scp_spec.UNDEFINED)
    path = tmp_path / "af.scp"
    path.write_bytes(record({3: section(3, section3(5000)), 6: section(6, section6(counts, 500, 5000)),
                             7: section(7, section7(boundaries, rr=600, vent_rate=scp_spec.UNDEFINED))}))
    m = read_ecg(path).device.measurements
    assert "pr_ms" not in m and m["qrs_ms"] == 132 and m["rr_ms"] == 600 and m["hr_bpm"] == 100.0   # from RR


def test_gem_run_interprets_an_scp_ecg(tmp_path, ptb_10s, tiny_bundle, capsys):
    path = tmp_path / "ptb.scp"
    path.write_bytes(scp_ecg(ptb_10s, 500))
    code, out, err = run_main(main, [str(path), "--bundle", str(tiny_bundle), "--json", "--max-new-tokens", "4"],
                              capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["device"]["statements"] == list(scp_spec.STATEMENTS) and result["measurements"]["hr_bpm"] > 0


def _with_byte(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def test_damaged_and_malformed_records_are_one_line(tmp_path, ptb_10s):
    good = scp_ecg(ptb_10s, 500)
    counts = np.round(ptb_10s * 1e6 / 5000).astype(np.int64)
    s1, s3 = section(1, section1()), section(3, section3(5000))
    s6_body = section6(counts, 500, 5000)
    three = ("I", "II", "V1")
    cases = {
        "flipped.scp": (_with_byte(good, len(good) - 100, bytes([good[-100] ^ 0x40])), "CRC mismatch"),
        "truncated.scp": (good[: len(good) // 2], "declares"),
        "huge.scp": (_with_byte(good, 2, struct.pack("<I", 0xFFFFFFF0)), "declares 4294967280 bytes"),
        "no_rhythm.scp": (record({1: s1, 3: s3}), "Section 6 (rhythm data) is missing"),
        "no_leads.scp": (record({1: s1, 6: section(6, s6_body)}), "Section 3 (lead definition) is missing"),
        "three_leads.scp": (record({3: section(3, section3(5000, three)),
                                    6: section(6, section6(counts[:3], 500, 5000))}), "missing"),
        "lead_sizes.scp": (record({3: s3, 6: section(6, section6(counts, 500, 5000, sizes=[60000] * 12))}),
                           "exceeds the section"),
        "zero_interval.scp": (record({3: s3, 6: section(6, _with_byte(s6_body, 2, b"\x00\x00"))}),
                              "sample interval is 0"),
        "slow.scp": (record({3: s3, 6: section(6, _with_byte(s6_body, 2, struct.pack("<H", 50000)))}),
                     "sampling rate 20 Hz is outside"),
        "bad_encoding.scp": (record({3: s3, 6: section(6, _with_byte(s6_body, 4, b"\x07"))}),
                             "unknown difference encoding 7"),
        "text.scp": (b"this is not an SCP-ECG record at all, just text\n" * 4, "not an SCP-ECG file"),
    }
    assert_files_refused(tmp_path, cases)


def test_without_the_formats_extra_the_error_says_what_to_install(tmp_path, ptb_10s):
    path = tmp_path / "ptb.scp"
    path.write_bytes(scp_ecg(ptb_10s, 500))
    p = run_without("ecgdatakit", ["measure", path])
    assert p.returncode == 2 and p.stderr.strip().endswith("reading SCP-ECG needs the formats extra: "
                                                           "pip install 'gem-edge[formats]' (ecgdatakit)"), p.stderr
