"""The diagnosis grounding: statements recognised (negations and questions are not statements), each finding's
criterion on simulated ECGs whose truth we made, on real labelled records (CinC AF and sinus tachycardia, CPSC RBBB,
LUDB sinus bradycardia), the cart's numbers as a second verdict, and the labels read as findings."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gem_runtime.diagnosis import (
    CONTRADICTED, CRITERIA, NOT_CHECKABLE, SUPPORTED, check_diagnoses, find_statements, flagged,
)
from gem_runtime.measure import Measurements, measure_ecg
from gem_runtime.readers.record import DeviceReport


def _stated(text: str) -> list[str]:
    return [m.finding for m in find_statements(text)]


# --- statements ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, findings", [
    ("Normal sinus rhythm at 72 bpm. No atrial fibrillation, flutter or AV block.", ["normal_sinus_rhythm"]),
    ("Sinus rhythm without first-degree AV block or bundle branch block.", ["sinus_rhythm"]),
    ("Irregularly irregular rhythm at 88 bpm with no P waves and a fibrillatory baseline, consistent with atrial "
     "fibrillation.", ["irregularly_irregular_rr", "atrial_fibrillation"]),
    ("Normal sinus rhythm with regular RR intervals and an upright P wave before every QRS complex.",
     ["normal_sinus_rhythm", "regular_rr", "p_wave_before_every_qrs"]),
    ("Sinus rhythm at 110 bpm; the rate above 100 bpm indicates sinus tachycardia.",
     ["sinus_rhythm", "sinus_tachycardia"]),
    ("The QT interval is not prolonged. Is the QT interval prolonged?", []),
    ("Atrial fibrillation is not present; there is no evidence of left ventricular hypertrophy.", []),
    ("Cannot rule out atrial fibrillation.", ["atrial_fibrillation"]),
    ("Sinus rhythm rather than atrial fibrillation.", ["sinus_rhythm"]),
    ("Non-specific intraventricular conduction delay, left axis deviation, incomplete right bundle branch block.",
     ["nonspecific_ivcd", "left_axis_deviation", "incomplete_right_bundle_branch_block"]),
    ("LVH with strain; RBBB; 1st degree AV block; prolonged QTc; low QRS voltage in the limb leads.",
     ["left_ventricular_hypertrophy", "right_bundle_branch_block", "first_degree_av_block", "long_qt",
      "low_voltage"]),
    ("Sinus bradycardia. Impression: sinus bradycardia.", ["sinus_bradycardia", "sinus_bradycardia"]),
    ("aVF and V1 show no ST change; the PR interval is normal.", []),
])
def test_statements_are_recognised_and_negations_are_not_statements(text, findings):
    assert _stated(text) == findings


def test_every_criterion_names_its_own_finding_and_has_a_source():
    for c in CRITERIA:
        assert _stated(c.name) == [c.finding], c.name
        assert c.source and c.criterion


def test_a_span_points_at_the_words_in_the_text():
    text = "The rate is fast, consistent with sinus tachycardia."
    [v] = check_diagnoses(text, Measurements())
    assert text[slice(*v.span)] == v.statement == "sinus tachycardia"
    assert v.verdict == NOT_CHECKABLE                              # nothing measured: never guessed
    d = json.loads(json.dumps(v.to_dict()))
    assert d["finding"] == "sinus_tachycardia" and d["span"] == list(v.span) and d["source"]


# --- criteria on simulated ECGs (their truth is known) -------------------------------------------------------------
def _simulated(conditions: list[str], seed: int = 0) -> Measurements:
    """Measurements as the simulator's truth gives them (intervals, axes, R peaks, P waves), with median beats
    averaged around the R peaks and fiducials from the truth: the criteria alone, apart from the delineation."""
    from gem_train.simulate import AF, simulate_ecg

    x, t = simulate_ecg(np.random.default_rng(seed), conditions)
    fs, before, after = 500.0, 250, 400
    r = np.asarray(t.r_peaks)
    keep = r[(r >= before) & (r + after <= x.shape[1])]
    beats = np.stack([x[:, k - before:k + after] for k in keep])                # (n, 12, 650)
    median = np.median(beats, axis=0)
    qrs_on = before - int(np.median(np.asarray(t.r_peaks) - np.asarray(t.qrs_onsets)))
    median = median - median[:, qrs_on - 10:qrs_on - 2].mean(axis=1, keepdims=True)   # PR level at 0
    af = t.rhythm == AF
    meas = Measurements(hr_bpm=t.hr_bpm, rr_ms=t.rr_ms, pr_ms=t.pr_ms, p_ms=t.p_ms, qrs_ms=t.qrs_ms, qt_ms=t.qt_ms,
                        qtc_bazett_ms=t.qtc_bazett_ms, qtc_fridericia_ms=t.qtc_fridericia_ms,
                        p_axis_deg=t.p_axis_deg, qrs_axis_deg=t.qrs_axis_deg, t_axis_deg=t.t_axis_deg,
                        rhythm_regular=t.rr_regular, fs=fs, median_beats=median, r_peaks=r)
    meas.fiducials = {"r": before, "qrs_on": qrs_on, "qrs_off": qrs_on + int(round(t.qrs_ms * fs / 1000)) - 1,
                      "t_end": qrs_on + int(round(t.qt_ms * fs / 1000)),
                      "p_on": None if af else qrs_on - int(round(t.pr_ms * fs / 1000))}
    if af:
        meas.quality.flags.append("p_absent")
        meas.quality.p_consistency, meas.quality.p_lag_ms = 0.2, 20.0
    return meas


def _verdict(name: str, meas, **kw) -> str:
    [v] = check_diagnoses(name, meas, **kw)
    return v.verdict


RIGHT_AND_WRONG = [   # (simulated conditions, statements supported, statements contradicted)
    (["normal sinus rhythm"], ["normal sinus rhythm", "sinus rhythm"],
     ["atrial fibrillation", "sinus tachycardia", "right bundle branch block", "left bundle branch block",
      "first-degree AV block", "left axis deviation", "right axis deviation"]),
    (["atrial fibrillation"], ["atrial fibrillation"],
     ["normal sinus rhythm", "sinus rhythm", "sinus bradycardia", "first-degree AV block", "atrial flutter"]),
    (["sinus tachycardia"], ["sinus tachycardia"], ["atrial fibrillation", "normal sinus rhythm"]),
    (["sinus bradycardia", "left bundle branch block"], ["sinus bradycardia", "left bundle branch block"],
     ["right bundle branch block", "sinus tachycardia"]),
    (["normal sinus rhythm", "right bundle branch block"], ["right bundle branch block"],
     ["left bundle branch block"]),
    (["normal sinus rhythm", "first-degree AV block"], ["first-degree AV block"], ["atrial fibrillation"]),
    (["normal sinus rhythm", "left axis deviation"], ["left axis deviation"], ["right axis deviation"]),
    (["normal sinus rhythm", "right axis deviation"], ["right axis deviation"], ["left axis deviation"]),
    (["normal sinus rhythm", "left ventricular hypertrophy"], ["left ventricular hypertrophy"], ["low QRS voltage"]),
]


@pytest.mark.parametrize("conditions, supported, contradicted", RIGHT_AND_WRONG)
def test_criteria_on_simulated_ecgs(conditions, supported, contradicted):
    meas = _simulated(conditions)
    for name in supported:
        assert _verdict(name, meas) == SUPPORTED, (conditions, name, check_diagnoses(name, meas)[0].reason)
    for name in contradicted:
        assert _verdict(name, meas) == CONTRADICTED, (conditions, name, check_diagnoses(name, meas)[0].reason)


def test_measured_simulated_rhythms():
    from gem_train.simulate import simulate_ecg

    for conditions, right, wrong in ((["atrial fibrillation"], "atrial fibrillation", "sinus rhythm"),
                                     (["sinus tachycardia"], "sinus tachycardia", "atrial fibrillation")):
        x, _ = simulate_ecg(np.random.default_rng(1), conditions)
        meas = measure_ecg(x, 500.0)
        assert _verdict(right, meas) == SUPPORTED and _verdict(wrong, meas) == CONTRADICTED, conditions


def test_a_value_within_the_margin_of_a_threshold_is_not_checkable():
    meas = Measurements(hr_bpm=101.5, pr_ms=205.0, qrs_ms=116.0, qrs_axis_deg=-27.0, qtc_bazett_ms=455.0,
                        qtc_fridericia_ms=452.0)
    assert _verdict("first-degree AV block", meas) == SUPPORTED
    assert _verdict("left axis deviation", meas) == NOT_CHECKABLE            # -27: within 10 degrees of -30
    assert _verdict("right bundle branch block", meas) == NOT_CHECKABLE      # 116 ms: within 10 ms of 120
    assert _verdict("long QT", meas, sex="M") == SUPPORTED                  # >= 450 for a man
    assert _verdict("long QT", meas, sex="F") == NOT_CHECKABLE              # near 460 for a woman
    assert _verdict("long QT", meas) == NOT_CHECKABLE                       # sex unknown: between the limits
    meas.pr_ms = 150.0
    assert _verdict("first-degree AV block", meas) == CONTRADICTED


def test_the_carts_numbers_give_a_second_verdict_and_its_statements_are_listed():
    meas = Measurements(hr_bpm=72.0, pr_ms=230.0)
    device = DeviceReport("Philips", "HeartstartMRx", "DXL", {"hr_bpm": 44.0, "pr_ms": 170.0},
                          ("Sinus bradycardia (rate< 50)", "No first degree AV block"))
    by = {v.finding: v for v in check_diagnoses("Sinus bradycardia, first-degree AV block.", meas, device=device)}
    brady, avb = by["sinus_bradycardia"], by["first_degree_av_block"]
    assert brady.verdict == CONTRADICTED and "72" in brady.reason              # ours: 72 bpm
    assert brady.device_verdict == NOT_CHECKABLE                              # rate fits, P waves not reported
    assert brady.device_statements == ("Sinus bradycardia (rate< 50)",)
    assert avb.verdict == SUPPORTED and avb.device_verdict == CONTRADICTED   # the cart's PR is 170 ms
    assert avb.device_statements == ()                                        # the cart denies it
    assert flagged(list(by.values())) == [brady]


# --- real labelled records ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(shared_data):
    from gem_runtime.constants import ECG_FS
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    def measure(path):
        x, _ = preprocess_ecg(read_ecg(path))
        return measure_ecg(x, ECG_FS)
    return lambda rel: measure(shared_data / "real" / rel)


@pytest.mark.parametrize("record", ["labelled/A0003.hea", "labelled/A0004.hea", "labelled/A0009.hea"])
def test_real_atrial_fibrillation(real, record):
    meas = real(record)                                                       # CinC: SNOMED 164889003
    assert _verdict("atrial fibrillation", meas) == SUPPORTED
    for wrong in ("sinus rhythm", "normal sinus rhythm", "sinus tachycardia", "sinus bradycardia"):
        assert _verdict(wrong, meas) == CONTRADICTED, wrong


@pytest.mark.parametrize("record,sinus", [("labelled/JS20009.hea", SUPPORTED),
                                          # 137 bpm: the short intervals between its beats are not flat (0.29 mV),
                                          # so a 2:1 flutter's conducted wave is not excluded from being its "P"
                                          ("labelled/JS20016.hea", NOT_CHECKABLE)])
def test_real_sinus_tachycardia_is_not_atrial_fibrillation(real, record, sinus):
    meas = real(record)                                                       # CinC: SNOMED 427084000
    [af] = check_diagnoses("Atrial fibrillation with rapid ventricular response.", meas)
    assert af.verdict == CONTRADICTED and ("RR regular" in af.reason or "a consistent P wave" in af.reason)
    assert _verdict("sinus tachycardia", meas) == sinus
    assert _verdict("normal sinus rhythm", meas) == CONTRADICTED             # above 100 bpm


def test_real_right_bundle_branch_block_and_sinus_bradycardia(real):
    rbbb = real("labelled/A0010.hea")                                         # CPSC: SNOMED 59118001
    assert _verdict("right bundle branch block", rbbb) == SUPPORTED
    assert _verdict("left bundle branch block", rbbb) == CONTRADICTED
    brady = real("ludb/1.hea")                                                # LUDB: "Sinus bradycardia", 45 bpm
    assert _verdict("sinus bradycardia", brady) == SUPPORTED
    assert _verdict("atrial fibrillation", brady) == CONTRADICTED
    assert _verdict("normal sinus rhythm", brady) == CONTRADICTED


def test_a_regular_rhythm_without_a_p_wave_is_not_sinus(real):
    paced_af = real("ludb/95.hea")            # LUDB: atrial fibrillation, ventricular pacing at a regular 65 bpm
    [nsr] = check_diagnoses("Normal sinus rhythm.", paced_af)
    assert nsr.verdict == CONTRADICTED and "RR regular" in nsr.reason and "no P wave before every QRS" in nsr.reason
    assert _verdict("sinus bradycardia", paced_af) == CONTRADICTED


def test_labels_are_read_as_findings(shared_data):
    from gem_train.real_labels import read_labels

    af = read_labels(shared_data / "real" / "labelled" / "A0003.hea")
    assert af.rhythm == "atrial_fibrillation" and af.sex == "F" and af.source == "cinc"
    assert af.absent == {"first_degree_av_block", "left_bundle_branch_block", "right_bundle_branch_block"}
    tach = read_labels(shared_data / "real" / "labelled" / "JS20000.hea")
    assert tach.rhythm == "sinus_tachycardia" and "nonspecific_ivcd" in tach.present and not tach.absent
    ludb = read_labels(shared_data / "real" / "ludb" / "23.hea")
    assert ludb.source == "ludb" and ludb.rhythm == "normal_sinus_rhythm"
    assert "right_bundle_branch_block" in ludb.present and "left_bundle_branch_block" in ludb.absent


def test_grounding_against_the_labels_alone(real, shared_data):
    from gem_train.real_labels import ground_labels, read_labels

    heads = ["labelled/A0003.hea", "labelled/A0009.hea", "labelled/JS20009.hea", "ludb/1.hea"]
    res = ground_labels([(read_labels(shared_data / "real" / h), real(h)) for h in heads])
    rhythm = res["rhythm"]
    assert rhythm["wrong_statements"] > 0 and rhythm["right_statements"] > 0
    assert rhythm["right_flagged"] == 0                                     # these four are clear cases
    assert rhythm["wrong_flagged_share"] >= 0.8
    assert rhythm["by_finding"]["atrial_fibrillation"]["counts"]["wrong"][CONTRADICTED] == 2   # JS20009, LUDB 1


def test_the_issues_follow_up_answer_on_pydicoms_cart_ecg():
    """Issue 29: asked about the QT, the demo model answered "normal sinus rhythm, first-degree AV block" on a normal
    cart ECG (PR about 150 ms, the cart says 161): the block is contradicted by ours and by the cart's PR."""
    from pydicom.data import get_testdata_file

    from gem_runtime.constants import ECG_FS
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    record = read_ecg(get_testdata_file("waveform_ecg.dcm"))
    x, _ = preprocess_ecg(record)
    by = {v.finding: v for v in check_diagnoses("Is the QT interval prolonged? Normal sinus rhythm, first-degree AV "
                                                "block.", measure_ecg(x, ECG_FS), device=record.device)}
    assert set(by) == {"normal_sinus_rhythm", "first_degree_av_block"}      # the question states nothing
    assert by["normal_sinus_rhythm"].verdict == SUPPORTED
    avb = by["first_degree_av_block"]
    assert avb.verdict == CONTRADICTED and avb.device_verdict == CONTRADICTED and "161" in avb.device_reason


# --- one RR rhythm in every output: the text printed "rhythm regular" (RR CV < 0.08) beside a check that said
#     "RR irregularly irregular" (successive differences >= 7%) on 23 of the shared records, and the other way round ---
@pytest.mark.parametrize("rel, words", [("ludb/167.hea", "RR irregularly irregular"),    # CV 0.06, 7.8%
                                        ("ludb/115.hea", "RR regular")])                # ectopic beats: CV 0.18
def test_the_text_outputs_give_the_rhythm_the_checks_give(real, shared_data, capsys, rel, words):
    from gem_runtime.cli import main
    from gem_runtime.diagnosis import rr_rhythm

    from clirun import run_main

    meas = real(rel)
    [verdict] = check_diagnoses("regular RR intervals", meas)
    assert rr_rhythm(meas).startswith(words + " (") and verdict.reason.startswith(rr_rhythm(meas))
    code, out, _ = run_main(main, ["measure", str(shared_data / "real" / rel)], capsys)
    rhythm = next(line for line in out.splitlines() if line.strip().startswith("rhythm"))
    assert code == 0 and words + " (" in rhythm and "RR CV" not in rhythm, rhythm
