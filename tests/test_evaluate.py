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


def _labelled_folder(tmp_path, shared_data, names=("A0003", "JS20009")):
    import shutil

    folder = tmp_path / "labelled"
    folder.mkdir()
    for name in names:
        for ext in (".hea", ".mat"):
            shutil.copy(shared_data / "real" / "labelled" / (name + ext), folder)
    return folder


def test_labelled_real_records_are_scored_and_the_grounding_flags_counted(tmp_path, tiny_checkpoint, shared_data,
                                                                          capsys):
    folder = _labelled_folder(tmp_path, shared_data)
    out = tmp_path / "labelled.json"
    code, stdout, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint), "--real", str(folder),
                                        "--max-new-tokens", "16", "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())["labelled"]
    assert res["n_records"] == 2 and res["skipped"] == [] and res["rhythm"]["n"] == 2
    assert [s["record"] for s in res["samples"]] == ["A0003", "JS20009"]
    labels = res["grounding_of_labels"]["rhythm"]            # no model needed: AF and sinus tachycardia stated
    assert labels["right_flagged"] == 0 and labels["wrong_flagged"] >= 0.75 * labels["wrong_statements"] > 0
    # what is not flagged is only not checkable: "atrial flutter" where no interval between the beats can show it
    assert {(w["finding"], w["verdict"]) for w in labels["wrong_not_flagged_statements"]} <= \
        {("atrial_flutter", "not checkable")}, labels["wrong_not_flagged_statements"]
    assert "rhythm named right" in stdout and "grounding on the model's rhythm statements" in stdout


def test_the_models_rhythm_statements_are_scored_against_the_labels(shared_data):
    from gem_runtime.constants import ECG_FS
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_train.evaluate import score_labelled
    from gem_train.real_labels import read_labels

    def reading(name, text):
        head = shared_data / "real" / "labelled" / f"{name}.hea"
        x, _ = preprocess_ecg(read_ecg(head))
        return read_labels(head), measure_ecg(x, ECG_FS), text

    af = "Irregularly irregular rhythm with no P waves, consistent with atrial fibrillation. Impression: atrial " \
         "fibrillation."
    res = score_labelled([reading("A0003", af), reading("JS20009", af),
                          reading("JS20016", "Sinus rhythm at 130 bpm, a sinus tachycardia. Impression: sinus "
                                             "tachycardia, right bundle branch block.")])
    assert res["rhythm"]["right"] == 2 and res["rhythm"]["sinus_records"] == 2 and res["rhythm"]["sinus_called_af"] == 1
    g = res["grounding_of_model"]
    assert (g["wrong_statements"], g["wrong_flagged"]) == (1, 1)             # AF on JS20009: flagged
    assert (g["right_statements"], g["right_flagged"]) == (3, 0)             # AF on A0003, sinus (tachycardia)
    assert res["conditions"]["right_bundle_branch_block"] == {"tp": 0, "fp": 0, "fn": 0, "stated_unlabelled": 1}


def test_eval_real_revise_scores_the_revised_reports_beside_the_models(tmp_path, tiny_checkpoint, shared_data, capsys):
    folder = _labelled_folder(tmp_path, shared_data)
    out = tmp_path / "revised.json"
    code, stdout, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint), "--real", str(folder),
                                        "--max-new-tokens", "16", "--revise", "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())["labelled"]
    model, revised = res["grounding_of_model"]["counts"], res["revised"]["grounding_of_model"]["counts"]
    assert res["revised"]["rhythm"]["n"] == res["rhythm"]["n"] == 2
    # a revision never leaves more contradicted rhythm statements than the model wrote
    assert sum(v["contradicted"] for v in revised.values()) <= sum(v["contradicted"] for v in model.values())
    assert len(res["revised"]["revisions"]) <= 2 * 3 and "after --revise-rhythm" in stdout


def test_the_pytorch_model_is_revised_as_the_runtime_revises(shared_data):
    """The demo checkpoint in PyTorch on GE MUSE example2 (a regular sinus rhythm it calls atrial fibrillation):
    gem_train.revision drives the runtime's revision; the revised report states a rhythm the measurements allow."""
    from pathlib import Path

    import numpy as np

    from gem_runtime.constants import DEFAULT_QUESTION, ECG_FS
    from gem_runtime.diagnosis import CONTRADICTED, RHYTHM_FINDINGS, check_diagnoses
    from gem_runtime.image import preprocess_image
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.prompt import build_prompt, prompt_ids
    from gem_runtime.readers import read_ecg
    from gem_runtime.render import render_ecg_image
    from gem_train.checkpoint import load_checkpoint
    from gem_train.evaluate import reference_ids
    from gem_train.revision import revise_torch
    from gem_train.tokenizer import SpTokenizer

    ckpt = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
    model, tok = load_checkpoint(ckpt), SpTokenizer(ckpt / "tokenizer.model")
    record = read_ecg(shared_data / "real" / "muse" / "example2.xml")
    x, _ = preprocess_ecg(record)
    meas = measure_ecg(x, ECG_FS)
    ids = reference_ids(model, tok, x, 160)

    def contradicted(text):
        return [v.finding for v in check_diagnoses(text, meas, record.device)
                if v.finding in RHYTHM_FINDINGS and v.verdict == CONTRADICTED]

    assert "atrial_fibrillation" in contradicted(tok.decode(ids)), tok.decode(ids)
    pixels = preprocess_image(render_ecg_image(x, fs=ECG_FS), model.config.vision_image_size).astype(np.float32)
    revised = revise_torch(model, tok, prompt_ids(build_prompt(DEFAULT_QUESTION), tok), x, pixels, ids, meas,
                           max_new_tokens=160)
    assert revised.revisions and revised.revisions[0].original_finding == "atrial_fibrillation"
    assert contradicted(tok.decode(revised.ids)) == [], tok.decode(revised.ids)


def test_eval_data_revise_scores_the_simulators_records_both_ways(tmp_path, tiny_checkpoint, tiny_corpus, capsys):
    out = tmp_path / "sim.json"
    code, stdout, err = run_main(main, ["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_corpus),
                                        "--n", "3", "--max-new-tokens", "16", "--revise", "--out", str(out)], capsys)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["scores"]["n"] == res["revised"]["scores"]["n"] == 3
    assert res["revised"]["reports_revised"] == len(res["revised"]["samples"]) <= 3
    assert all(s["text"] != s["model_text"] for s in res["revised"]["samples"])
    assert "after --revise-rhythm" in stdout
