"""HL7 aECG through ecgdatakit: a real ECG written in the aECG layout reads and measures as its source, the
device's annotations come through, and broken files are refused in one line."""
import numpy as np
import pytest

from aecg_spec import aecg_xml
from clirun import run_main
from malformed import assert_files_refused
from gem_runtime.cli import main
from gem_runtime.constants import LEADS
from gem_runtime.measure import MEASUREMENT_KEYS, measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg


@pytest.fixture(scope="module")
def ptb_10s(ptb):
    return preprocess_ecg(read_ecg(ptb))[0]


def test_reads_and_measures_as_its_source_with_the_devices_annotations(tmp_path, ptb_10s, capsys):
    path = tmp_path / "ptb.aecg.xml"
    path.write_text(aecg_xml(ptb_10s, 500, uv_per_unit=0.5))               # PTB's own step: 0.5 uV
    r = read_ecg(path)
    assert r.leads == LEADS and r.fs == 500.0 and r.warnings == ()
    assert np.abs(r.signal - ptb_10s).max() <= 0.00025 + 1e-6                # half a step
    ours, source = measure_ecg(r.signal, 500).to_dict(), measure_ecg(ptb_10s, 500).to_dict()
    assert {k: ours[k] for k in MEASUREMENT_KEYS} == {k: source[k] for k in MEASUREMENT_KEYS}
    assert r.device.measurements == {"hr_bpm": 82, "pr_ms": 172, "qrs_ms": 132, "qt_ms": 412, "qtc_ms": 481,
                                     "qrs_axis_deg": -95}
    assert r.device.statements == ("Sinus rhythm",)
    code, out, err = run_main(main, ["measure", str(path)], capsys)
    assert code == 0 and "device: HR 82 bpm | PR 172 ms | QRS 132 ms | QT 412 ms | QTc 481 ms" in out


def test_broken_aecg_is_one_line(tmp_path, ptb_10s):
    good = aecg_xml(ptb_10s, 500)
    cases = {"noinc.xml": (aecg_xml(ptb_10s, 500, increment="0"), "No usable time increment"),
             "text.xml": (good.replace("<digits>", "<digits>x ", 1), "Invalid digits"),
             "nodigits.xml": (good.replace(good[good.index("<digits>"):good.index("</digits>") + 9], "<digits/>", 1),
                              "has no digits"),
             "bomb.xml": (good.replace("<AnnotatedECG", '<!DOCTYPE a [<!ENTITY b "c">]><AnnotatedECG', 1),
                          "HL7 aECG unreadable")}
    assert_files_refused(tmp_path, cases)
