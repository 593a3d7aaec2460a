"""The diagnosis verdicts reach every place a report goes: gem-run's text and JSON, follow-up answers, the DICOM
SR and the HL7 ORU. Driven with the committed demo model on a real sinus-rhythm cart ECG (GE MUSE), about which
the demo model states a finding our measurements contradict (step 2h: atrial fibrillation; 2i: right axis deviation
at a QRS axis near 0 degrees): the verdict must say contradicted wherever the report is read."""
import json

import pydicom
import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_runtime.cli import main
from gem_runtime.diagnosis import CONTRADICTED, VERDICTS, check_diagnoses

MUSE_SINUS = "real/muse/muse-sinus.xml"        # GE MUSE, 12SL: sinus rhythm at 90 bpm


@pytest.fixture(scope="module")
def muse_result(demo, shared_data):
    return demo.interpret(shared_data / MUSE_SINUS, max_new_tokens=160)


def test_every_stated_finding_has_a_verdict_and_its_span(muse_result):
    assert muse_result.diagnoses, muse_result.text
    chars = list(muse_result.text)
    for v in muse_result.diagnoses:
        assert v.verdict in VERDICTS and v.reason
        assert "".join(chars[v.span[0]:v.span[1]]).lower() == v.statement.lower()


def test_the_demo_models_wrong_statement_here_is_contradicted(muse_result):
    wrong = [v for v in muse_result.diagnoses if v.verdict == CONTRADICTED]
    assert wrong, f"the premise of this file: the demo model states a contradicted finding: {muse_result.text!r}"
    assert all(v.reason and v.criterion and v.source for v in wrong)


def test_atrial_fibrillation_over_this_regular_sinus_rhythm_is_contradicted(muse_result):
    """What step 2h's model said here, checked against the measurements gem-run made of this file."""
    [af] = check_diagnoses("Impression: atrial fibrillation.", muse_result.measurements, muse_result.device)
    assert af.verdict == CONTRADICTED and "P wave" in af.reason and "RR regular" in af.reason


def test_gem_run_prints_the_verdicts_in_text_and_json(shared_data, capsys):
    ecg = str(shared_data / MUSE_SINUS)
    code, out, err = run_main(main, [ecg, "--json", "--threads", "2", "--max-new-tokens", "160"], capsys)
    assert code == 0, err
    body = json.loads(out)
    assert body["diagnoses"] and {d["verdict"] for d in body["diagnoses"]} <= set(VERDICTS)
    code, out, err = run_main(main, [ecg, "--threads", "2", "--max-new-tokens", "160"], capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("diagnosis: ")]
    assert len(lines) == len(body["diagnoses"])
    contradicted = [d for d in body["diagnoses"] if d["verdict"] == CONTRADICTED]
    assert sum("CONTRADICTED" in line for line in lines) == len(contradicted)


def test_a_follow_up_answer_is_checked_too(demo, muse_result):
    answer = demo.ask(muse_result, "What is the rhythm?", max_new_tokens=80)
    assert "diagnoses" in answer.to_dict()
    for v in answer.diagnoses:
        assert v.verdict in VERDICTS


def test_the_sr_and_the_hl7_carry_the_verdicts(muse_result, tmp_path):
    pytest.importorskip("highdicom")
    pytest.importorskip("hl7apy")
    from gem_runtime.hospital import build_oru, write_sr

    body = muse_result.to_dict()
    source = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    oru = build_oru(body, source)
    notes = [seg for seg in oru.split("\r") if seg.startswith("NTE") and "diagnosis " in seg]
    assert len(notes) == len(body["diagnoses"])
    sr = pydicom.dcmread(write_sr(body, source, tmp_path / "sr.dcm"))
    meanings = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert "Grounding of the stated diagnoses" in meanings
    box = next(i for i in sr.ContentSequence
               if i.ConceptNameCodeSequence[0].CodeMeaning == "Grounding of the stated diagnoses")
    assert len(box.ContentSequence) == len(body["diagnoses"])
