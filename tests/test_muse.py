"""GE MUSE XML through ecgdatakit: 8 stored leads, the 12SL measurements and statements, a converted real ECG
that measures as its source, and broken exports refused in one line."""

import numpy as np
import pytest

from clirun import run_main, run_without
from malformed import assert_files_refused
from gem_runtime.cli import main
from gem_runtime.constants import LEADS
from gem_runtime.measure import measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
from muse_spec import MEASUREMENTS, lead_data, muse_xml


@pytest.fixture(scope="module")
def ptb_10s(ptb):
    return preprocess_ecg(read_ecg(ptb))[0]          # (12, 5000) mV at 500 Hz, as a MUSE export holds


@pytest.fixture
def muse(tmp_path, ptb_10s):
    path = tmp_path / "ptb_muse.xml"
    path.write_text(muse_xml(ptb_10s, 500))
    return path


def test_eight_stored_leads_become_twelve_and_measure_as_the_source(muse, ptb_10s):
    r = read_ecg(muse)
    assert r.leads == LEADS and r.fs == 500.0 and r.signal.shape == (12, 5000)
    assert r.warnings == ("derived III, aVR, aVL, aVF from I and II (not stored in the file)",)
    stored = [LEADS.index(n) for n in ("I", "II", "V1", "V6")]
    assert np.abs(r.signal[stored] - ptb_10s[stored]).max() <= 4.88e-3 / 2 + 1e-6     # half a count
    ours, source = measure_ecg(r.signal, 500), measure_ecg(ptb_10s, 500)
    assert ours.hr_bpm == pytest.approx(source.hr_bpm, abs=0.5)
    for key in ("pr_ms", "qrs_ms", "qt_ms"):            # a sample or two: counts, and III..aVF derived
        assert abs(getattr(ours, key) - getattr(source, key)) <= 4, key
    assert abs(ours.qrs_axis_deg - source.qrs_axis_deg) <= 3


def test_the_12sl_measurements_and_statements_come_through(muse, capsys):
    d = read_ecg(muse).device
    assert (d.vendor, d.model, d.program) == ("GE", "MAC55", "12SL 010B")
    assert d.measurements == {"hr_bpm": 82, "pr_ms": 172, "qrs_ms": 132, "qt_ms": 412, "qtc_ms": 481,
                              "p_axis_deg": 58, "qrs_axis_deg": -95, "t_axis_deg": -68}
    assert d.statements == ("Normal sinus rhythm", "Inferior infarct, age undetermined")
    code, out, err = run_main(main, ["measure", str(muse)], capsys)
    assert code == 0 and "device: GE MAC55 (12SL 010B): HR 82 bpm | PR 172 ms | QRS 132 ms" in out


def test_broken_muse_exports_are_one_line(tmp_path, ptb_10s):
    counts = np.round(ptb_10s[0] * 1000 / 4.88)
    cases = {
        "nobase.xml": (muse_xml(ptb_10s, 500, sample_base="x"), "no valid SampleBase"),
        "twoleads.xml": (muse_xml(ptb_10s, 500, leads=("I", "II")), "missing V1, V2, V3, V4, V5, V6"),
        "badb64.xml": (muse_xml(ptb_10s, 500, lead_xml=[lead_data("I", counts, data="!!!not base64!!!")] +
                                [lead_data(n, counts) for n in ("II", "V1", "V2", "V3", "V4", "V5", "V6")]),
                       "GE MUSE XML unreadable"),
        "entities.xml": (muse_xml(ptb_10s, 500).replace('SYSTEM "restecg.dtd">', '[<!ENTITY x "y">]>'),
                         "GE MUSE XML unreadable"),
    }
    assert len(MEASUREMENTS) == 9
    assert_files_refused(tmp_path, cases)


def test_without_the_formats_extra_the_error_says_what_to_install(muse):
    p = run_without("ecgdatakit", ["measure", muse])
    assert p.returncode == 2 and p.stderr.strip().endswith("pip install 'gem-edge[formats]' (ecgdatakit)"), p.stderr
