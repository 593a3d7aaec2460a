"""The grounding check reads the numbers a text states and compares them with real measurements."""

import numpy as np
import pytest

from gem_runtime.grounding import AGREE, DISAGREE, NOT_MEASURABLE, check_grounding
from gem_runtime.measure import measure_ecg
from gem_train.simulate import AF, NSR, simulate_ecg


@pytest.fixture(scope="module")
def sinus():
    signal, truth = simulate_ecg(np.random.default_rng(31), [NSR])
    return truth, measure_ecg(signal, 500)


def report(hr, pr, qrs, qt, qtc, axis):
    return (f"The rhythm is sinus at {hr} bpm with regular RR intervals. The PR interval is {pr} ms, "
            f"QRS duration {qrs} ms, QT/QTc {qt}/{qtc} ms, and the QRS axis is {axis} degrees. "
            "Impression: normal sinus rhythm.")


def verdicts(items):
    return {item.quantity: item.verdict for item in items}


def test_true_numbers_agree(sinus):
    truth, meas = sinus
    text = report(round(truth.hr_bpm), round(truth.pr_ms), round(truth.qrs_ms), round(truth.qt_ms),
                  round(truth.qtc_bazett_ms), round(truth.qrs_axis_deg))
    items = check_grounding(text, meas)
    assert [i.quantity for i in items] == ["hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg"]
    assert all(i.verdict == AGREE for i in items), items


def test_planted_wrong_numbers_disagree(sinus):
    truth, meas = sinus
    text = report(round(truth.hr_bpm) + 30, round(truth.pr_ms), round(truth.qrs_ms) + 50,
                  round(truth.qt_ms), round(truth.qtc_bazett_ms), round(truth.qrs_axis_deg) + 90)
    got = verdicts(check_grounding(text, meas))
    assert got == {"hr_bpm": DISAGREE, "pr_ms": AGREE, "qrs_ms": DISAGREE, "qt_ms": AGREE,
                   "qtc_ms": AGREE, "qrs_axis_deg": DISAGREE}


def test_tolerance_edges_and_both_values(sinus):
    _, meas = sinus
    inside = check_grounding(f"QRS duration {meas.qrs_ms + 18:.0f} ms", meas)[0]
    outside = check_grounding(f"QRS duration {meas.qrs_ms + 25:.0f} ms", meas)[0]
    assert (inside.verdict, outside.verdict) == (AGREE, DISAGREE)
    assert outside.tolerance == 20 and outside.measured == pytest.approx(meas.qrs_ms, abs=0.1)
    rate = check_grounding(f"a heart rate of {meas.hr_bpm * 1.08:.0f}", meas)[0]
    assert rate.quantity == "hr_bpm" and rate.verdict == AGREE


def test_axis_forms_and_wave_names(sinus):
    _, meas = sinus
    text = f"Left axis deviation, axis -60°. The T wave axis is {meas.t_axis_deg:.0f} degrees."
    items = check_grounding(text, meas)
    assert [(i.quantity, i.stated) for i in items] == [("qrs_axis_deg", -60.0),
                                                      ("t_axis_deg", round(meas.t_axis_deg))]
    assert items[1].verdict == AGREE


def test_pr_in_atrial_fibrillation_is_not_measurable():
    signal, _ = simulate_ecg(np.random.default_rng(32), [AF])
    meas = measure_ecg(signal, 500)
    item = check_grounding("The PR interval is 160 ms.", meas)[0]
    assert item.verdict == NOT_MEASURABLE and item.measured is None and "P wave" in item.reason


def test_text_without_numbers_gives_nothing(sinus):
    assert check_grounding("Normal sinus rhythm. No acute ST changes.", sinus[1]) == []
