"""Flutter waves (gem_runtime.measure.atrial) on real records: the typical flutter of LUDB 103 (variable conduction,
held out of the demo model's training; its cardiologists: "Atrial flutter, typical"), flutter made from a training
record's own beats (gem_train.real_flutter), and real sinus rhythms and atrial fibrillation, where none may be
found. What the diagnosis grounding makes of them: flutter supported, sinus rhythm and fibrillation contradicted."""
import numpy as np
import pytest

from gem_runtime.constants import ECG_FS
from gem_runtime.diagnosis import CONTRADICTED, NOT_CHECKABLE, SUPPORTED, check_diagnoses
from gem_runtime.diagnosis.criteria import FLUTTER_TP_BUSY_MV, FLUTTER_TP_FLAT_MV, FLUTTER_WAVE_PERIODICITY
from gem_runtime.measure import measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg


def _measured(path):
    x, _ = preprocess_ecg(read_ecg(path))
    return x, measure_ecg(x, ECG_FS)


def _verdict(text, meas):
    [v] = check_diagnoses(text, meas)
    return v


def test_the_flutter_waves_of_a_real_typical_flutter(ludb):
    _, meas = _measured(ludb / "103.hea")
    a = meas.atrial_waves
    assert a.cycle_ms is not None, a.reason
    assert 240 <= a.rate_per_min <= 340 and a.periodicity >= FLUTTER_WAVE_PERIODICITY and a.half_cycle < 0
    assert a.lead in ("II", "III", "aVF") and a.amplitude_mv > 0.1      # the inferior sawtooth
    assert meas.hr_bpm < a.rate_per_min / 2                              # conducted 2:1 or slower
    assert _verdict("atrial flutter", meas).verdict == SUPPORTED
    for wrong in ("sinus rhythm", "sinus tachycardia", "atrial fibrillation"):
        v = _verdict(wrong, meas)
        assert v.verdict == CONTRADICTED and "flutter waves" in v.reason, (wrong, v.reason)
        assert v.evidence["f_wave_periodicity"] >= FLUTTER_WAVE_PERIODICITY


@pytest.mark.parametrize("record", ["1", "5", "9", "21", "33", "45", "89", "101", "173"])
def test_no_flutter_waves_in_real_sinus_rhythm_or_fibrillation(ludb, record):
    """Training-half LUDB records: sinus rhythms (45 and 89 repeat best between their beats, 0.43 and 0.55) and
    atrial fibrillations (101 the most regular, 0.78)."""
    _, meas = _measured(ludb / f"{record}.hea")
    a = meas.atrial_waves
    assert a.periodicity is None or a.periodicity < FLUTTER_WAVE_PERIODICITY - 0.05, a
    assert "flutter waves" not in _verdict("sinus rhythm", meas).reason
    assert _verdict("atrial flutter", meas).verdict != SUPPORTED


def test_cart_ecgs_hold_no_flutter_waves(shared_data):
    for name in ("real/muse/example2.xml", "real/philips/2020-5-18_15-48-11.xml",
                 "real/cardiosoft/cardiosoft_example.xml", "real/aecg/hl7_example_aecg.xml"):
        _, meas = _measured(shared_data / name)
        a = meas.atrial_waves
        assert a.periodicity is None or a.periodicity < FLUTTER_WAVE_PERIODICITY - 0.05, (name, a)


def test_flutter_made_from_a_sinus_records_beats_is_measured(ludb):
    """Variable conduction (2-4:1) leaves intervals of two cycles and more (found in 73 of 92 such copies of the
    training half; at 4:1 in 34 of 110: the delineator takes the F wave before the QRS for a P wave)."""
    from gem_train.real_flutter import flutter_from_beats

    x, _ = _measured(ludb / "21.hea")
    y = flutter_from_beats(x, np.random.default_rng(0), "variable")
    meas = measure_ecg(y, ECG_FS)
    a = meas.atrial_waves
    assert a.cycle_ms is not None and a.periodicity >= FLUTTER_WAVE_PERIODICITY, a
    assert 180 - 12 <= a.cycle_ms <= 250 + 12
    assert _verdict("sinus rhythm", meas).verdict == CONTRADICTED
    assert _verdict("atrial flutter", meas).verdict == SUPPORTED
    assert np.array_equal(y, flutter_from_beats(x, np.random.default_rng(0), "variable"))


def test_two_to_one_flutter_leaves_no_interval_and_is_not_judged(ludb):
    """At 2:1 the QRS and T fill the RR interval: not measured, with the reason, and no verdict cites them."""
    from gem_train.real_flutter import flutter_from_beats

    x, _ = _measured(ludb / "21.hea")
    meas = measure_ecg(flutter_from_beats(x, np.random.default_rng(5), "2:1"), ECG_FS)
    a = meas.atrial_waves
    assert a.cycle_ms is None and "2:1" in a.reason
    assert _verdict("atrial flutter", meas).verdict != SUPPORTED
    assert "flutter waves" not in _verdict("sinus rhythm", meas).reason
    assert _verdict("atrial fibrillation", meas).evidence["f_wave_periodicity"] is None


@pytest.mark.parametrize("record", ["1", "9", "33"])
def test_a_flat_baseline_beat_by_beat_contradicts_flutter(ludb, record):
    """Training-half sinus rhythms: between every T end and the next P wave the baseline is flat (under 0.08 mV
    in II, III, aVF and V1, over intervals of 120 ms and more), which flutter waves never leave."""
    _, meas = _measured(ludb / f"{record}.hea")
    a = meas.atrial_waves
    assert a.n_baseline >= 3 and a.baseline_mv < FLUTTER_TP_FLAT_MV, a
    v = _verdict("atrial flutter", meas)
    assert v.verdict == CONTRADICTED and "flat beat by beat" in v.reason, v.reason
    assert v.evidence["tp_n"] == a.n_baseline


def test_a_p_wave_alone_does_not_contradict_flutter(shared_data):
    """JS20000 (training half, sinus tachycardia at 117 bpm): a consistent P wave before every QRS, but the short
    intervals between the beats are not flat (0.12 mV). A flutter wave conducted 2:1 sits before every QRS at a
    fixed interval just as a P wave does, so the flutter statement is not checkable, not contradicted."""
    _, meas = _measured(shared_data / "real/labelled/JS20000.hea")
    a = meas.atrial_waves
    assert meas.hr_bpm > 110 and FLUTTER_TP_FLAT_MV <= a.baseline_mv < FLUTTER_TP_BUSY_MV, a
    v = _verdict("atrial flutter", meas)
    assert v.verdict == NOT_CHECKABLE and "consistent P wave" in v.reason, v.reason
    assert _verdict("sinus tachycardia", meas).verdict == SUPPORTED


def test_fixed_conduction_flutter_is_not_contradicted_and_not_called_sinus(ludb):
    """Flutter made from LUDB 21's beats at 4:1, each QRS locked to its flutter wave: the wave before every QRS
    looks like a P wave, and no interval holds two cycles to measure the flutter waves. The baseline between the
    beats is busy beat by beat, so "sinus rhythm" is not supported and "atrial flutter" not contradicted (both were,
    by the P wave alone, before the baseline was measured per beat)."""
    from gem_train.real_flutter import flutter_from_beats

    x, _ = _measured(ludb / "21.hea")
    meas = measure_ecg(flutter_from_beats(x, np.random.default_rng(0), "4:1"), ECG_FS)
    a = meas.atrial_waves
    assert a.cycle_ms is None and a.baseline_mv >= FLUTTER_TP_BUSY_MV, a
    assert _verdict("atrial flutter", meas).verdict == NOT_CHECKABLE
    sinus = _verdict("sinus rhythm", meas)
    assert sinus.verdict == NOT_CHECKABLE and "flutter waves not excluded" in sinus.reason, sinus.reason
    assert _verdict("atrial fibrillation", meas).verdict == CONTRADICTED
