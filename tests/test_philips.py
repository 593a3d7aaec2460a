"""Philips Sierra XML: the real file from a HeartStart MRx (shared/data/vendor), its device's own measurements
and statements, and hostile XML refused in one line."""
import base64
import json
import time

import numpy as np
import pytest

from clirun import run_main
from gem_runtime.cli import main
from gem_runtime.constants import LEADS
from gem_runtime.errors import EcgReadError
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg


@pytest.fixture(scope="session")
def philips(shared_data):
    return shared_data / "vendor" / "philips_129DYPRG.xml"


def test_reads_12_leads_in_mv_with_the_calibration_pulse_left_out(philips):
    r = read_ecg(philips)
    assert r.leads == LEADS and r.fs == 500.0 and r.signal.shape == (12, 5500)     # 11 s
    pulse = r.signal[:, int(10.72 * 500):int(10.88 * 500)]
    np.testing.assert_allclose(pulse, 1.0)                 # the device's 1 mV pulse: 200 units of 5 uV
    lead = dict(zip(LEADS, r.signal[:, :5000].astype(np.float64)))    # before the pulse, which every lead has
    # limb leads are stored as residuals and rebuilt by the decoder: Einthoven holds to a unit or two
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 0.0101          # 2 units of 5 uV
    assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= 0.0101
    x, warnings = preprocess_ecg(r)
    assert warnings == ["truncated to the first 10 s of 11.0 s"] and np.abs(x).max() < 1.0   # no pulse left


def test_the_devices_measurements_and_statements_come_through(philips):
    d = read_ecg(philips).device
    assert (d.vendor, d.model) == ("Philips", "HeartstartMRx")
    assert d.measurements == {"hr_bpm": 41, "pr_ms": 151, "qrs_ms": 135, "qt_ms": 476, "qtc_ms": 393,
                              "p_axis_deg": 66, "qrs_axis_deg": -21, "t_axis_deg": 59}
    assert d.statements[0] == "Sinus bradycardia (rate< 50)" and len(d.statements) == 4
    assert "Nonspecific intraventricular conduction delay" in d.statements[1]


def test_gem_run_measure_prints_ours_beside_the_devices(philips, capsys):
    code, out, err = run_main(main, ["measure", str(philips)], capsys)
    assert code == 0, err
    assert "device: Philips HeartstartMRx" in out and "HR 41 bpm | PR 151 ms | QRS 135 ms" in out
    assert "device says: Sinus bradycardia (rate< 50)" in out and "heart rate      40." in out
    code, out, err = run_main(main, ["measure", str(philips), "--json"], capsys)
    d = json.loads(out)
    assert d["device"]["measurements"]["qrs_ms"] == 135 and 38 < d["hr_bpm"] < 44


def test_read_time(philips):
    read_ecg(philips)
    t0 = time.perf_counter()
    read_ecg(philips)
    assert time.perf_counter() - t0 < 0.5          # ~8 ms here (readers/xli.py; sierraecg took ~140 ms)


def _sierra(tmp_path, name: str, body: str, doctype: str = "") -> str:
    path = tmp_path / name
    path.write_text(f'<?xml version="1.0"?>{doctype}<restingecgdata xmlns="http://www3.medical.philips.com">'
                    f"{body}</restingecgdata>")
    return path


def test_hostile_and_broken_xml_is_one_line(philips, tmp_path):
    laughs = ('<!DOCTYPE r [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>')
    external = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    real = philips.read_text()
    cut = philips.read_text()[: len(real) // 2]
    b64 = real.index('dataencoding="Base64"')
    data_start = real.index(">", b64) + 1
    corrupt = real[:data_start] + base64.b64encode(b"\x00" * 300).decode() + "</parsedwaveforms>" + \
        real[real.index("</parsedwaveforms>", data_start) + len("</parsedwaveforms>"):]
    cases = [
        (_sierra(tmp_path, "laughs.xml", "<x>&d;</x>", laughs), "XML refused"),
        (_sierra(tmp_path, "external.xml", "<x>&x;</x>", external), "XML refused"),
        ((tmp_path / "cut.xml", cut), "not well-formed XML"),
        ((tmp_path / "corrupt.xml", corrupt), "Sierra XML waveforms unreadable"),
        ((tmp_path / "nofs.xml", real.replace("<samplingrate>500</samplingrate>", "<samplingrate>x</samplingrate>")),
         "Sierra XML samplingrate is 'x', not a number"),
        ((tmp_path / "negres.xml", real.replace("<signalresolution>5<", "<signalresolution>-5<")),
         "signalresolution is -5, not a positive number"),
        (_sierra(tmp_path, "empty.xml", ""), "lacks dataacquisition/signalcharacteristics"),
    ]
    for case, message in cases:
        if isinstance(case, tuple):
            case[0].write_text(case[1])
            case = case[0]
        t0 = time.perf_counter()
        with pytest.raises(EcgReadError) as e:
            read_ecg(case)
        assert message in str(e.value) and "\n" not in str(e.value) and case.name in str(e.value), str(e.value)
        assert time.perf_counter() - t0 < 2.0


def test_gem_run_reports_the_devices_findings_with_its_own(philips, capsys):
    code, out, err = run_main(main, [str(philips), "--json", "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["device"]["model"] == "HeartstartMRx" and d["device"]["measurements"]["hr_bpm"] == 41
    assert 38 < d["measurements"]["hr_bpm"] < 44
    code, out, err = run_main(main, [str(philips), "--max-new-tokens", "8"], capsys)
    lines = out.splitlines()
    device = next(i for i, line in enumerate(lines) if line.startswith("device: Philips HeartstartMRx"))
    assert lines[device + 1] == "device says: Sinus bradycardia (rate< 50)"
    assert any(line.startswith("measured: HR 40.") for line in lines[device:])


def test_where_ours_and_the_devices_disagree_the_report_says_so(philips, tmp_path, capsys):
    # the real file with its device's QRS duration changed (ours now agrees with the real 135 ms)
    edited = tmp_path / "philips_qrs180.xml"
    edited.write_text(philips.read_text().replace("<meanqrsdur>135</meanqrsdur>", "<meanqrsdur>180</meanqrsdur>"))
    code, out, err = run_main(main, ["measure", str(edited), "--json"], capsys)
    d = json.loads(out)
    by = {c["quantity"]: c for c in d["device_comparison"]}
    assert by["hr_bpm"]["verdict"] == "agree" and by["pr_ms"]["verdict"] == "agree"
    assert by["qrs_ms"] == {"quantity": "qrs_ms", "measured": by["qrs_ms"]["measured"], "device": 180.0,
                            "verdict": "disagree", "tolerance": 20.0}
    assert "device_disagrees" in d["quality"]["flags"]
    code, out, err = run_main(main, ["measure", str(edited)], capsys)
    assert "device disagrees: qrs_ms device 180, measured" in out
    code, out, err = run_main(main, ["measure", str(philips), "--json"], capsys)
    assert "device_disagrees" not in json.loads(out)["quality"]["flags"]


def test_dicom_annotations_are_the_carts_measurements(capsys):
    from pydicom.data import get_testdata_file

    from gem_runtime.grounding import check_grounding, compare_with_device
    from gem_runtime.measure import measure_ecg

    r = read_ecg(get_testdata_file("waveform_ecg.dcm"))
    d = r.device
    assert (d.vendor, d.model) == ("Mortara Instrument, Inc.", "el250")
    assert d.measurements == {"rr_ms": 982, "pr_ms": 161, "qrs_ms": 75, "qt_ms": 368, "qtc_ms": 370,
                              "p_axis_deg": 74, "qrs_axis_deg": 52, "t_axis_deg": 57,
                              "hr_bpm": round(60000 / 982, 1)}          # the rate its RR implies
    assert d.statements == ("RITMO SINUSALE", "ECG NORMALE")
    meas = measure_ecg(preprocess_ecg(r)[0], 500)
    items = check_grounding("PR interval 200 ms, QRS duration 80 ms.", meas, d)
    assert [(i.quantity, i.device, i.device_verdict) for i in items] == [("pr_ms", 161, "disagree"),
                                                                        ("qrs_ms", 75, "agree")]
    assert all(c.verdict == "agree" for c in compare_with_device(meas, d))
    assert "device_disagrees" not in meas.quality.flags
