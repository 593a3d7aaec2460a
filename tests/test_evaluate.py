"""gem-train eval on real ECGs: the model's reading beside the cart's own statements and our measurement, through
the real command; a file it cannot read is one line naming it; no input at all is a usage error."""
from __future__ import annotations

import json

import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_train.cli import main


def test_real_ecgs_are_read_beside_what_their_cart_says(tmp_path, tiny_checkpoint, shared_data, capsys):
    philips, dicom = shared_data / "vendor" / "philips_129DYPRG.xml", get_testdata_file("waveform_ecg.dcm")
    out = tmp_path / "real.json"
    code, stdout, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint), "--real", str(philips),
                                        "--real", dicom, "--max-new-tokens", "24", "--out", str(out)], capsys)
    assert code == 0, err
    readings = json.loads(out.read_text())["real"]
    assert [r["file"] for r in readings] == ["philips_129DYPRG.xml", "waveform_ecg.dcm"]
    mrx, mortara = readings
    assert mrx["device"] == "Philips HeartstartMRx" and mrx["device_hr_bpm"] == 41.0
    assert "Sinus bradycardia (rate< 50)" in mrx["device_statements"]
    assert mrx["measured_hr_bpm"] == pytest.approx(41.0, abs=2.0)            # our measurement, not the cart's
    assert mortara["device_hr_bpm"] == 61.1 and mortara["measured_hr_bpm"] == pytest.approx(61.1, abs=2.0)
    assert all(r["text"] for r in readings)                                   # the tiny model says something
    assert "philips_129DYPRG.xml: model says" in stdout and "Philips HeartstartMRx: Sinus bradycardia" in stdout


def test_an_unreadable_real_file_is_one_line_and_no_input_is_a_usage_error(tmp_path, tiny_checkpoint, capsys):
    bad = tmp_path / "cart.xml"
    bad.write_text("<restingecgdata><broken")
    code, _, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint), "--real", str(bad),
                                   "--out", str(tmp_path / "o.json")], capsys)
    assert code == 2 and err.count("\n") == 1 and str(bad) in err, err
    assert not (tmp_path / "o.json").exists()
    code, _, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint)], capsys)
    assert code == 2 and "give --data DIR, --real FILE or both" in err, err
