"""Flutter waves (gem_runtime.measure.atrial) on real records: the typical flutter of LUDB 103 (variable conduction,
held out of the demo model's training; its cardiologists: "Atrial flutter, typical"), flutter made from a training
record's own beats (gem_train.real_flutter), and real sinus rhythms and atrial fibrillation, where none may be
found. What the diagnosis grounding makes of them: flutter supported, sinus rhythm and fibrillation contradicted."""
import numpy as np
import pytest

from gem_runtime.constants import ECG_FS
from gem_runtime.diagnosis import CONTRADICTED, SUPPORTED, check_diagnoses
from gem_runtime.diagnosis.criteria import FLUTTER_WAVE_PERIODICITY
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
    """Variable conduction (2-4:1) leaves intervals of two cycles and more (found in 84 of 92 such copies of the
    training half; at 4:1 in 42 of 110: the delineator takes the F wave before the QRS for a P wave)."""
    from gem_train.real_flutter import flutter_from_beats

    x, _ = _measured(ludb / "21.hea")
    y = flutter_from_beats(x, np.random.default_rng(5), "variable")
    meas = measure_ecg(y, ECG_FS)
    a = meas.atrial_waves
    assert a.cycle_ms is not None and a.periodicity >= FLUTTER_WAVE_PERIODICITY, a
    assert 180 - 12 <= a.cycle_ms <= 250 + 12
    assert _verdict("sinus rhythm", meas).verdict == CONTRADICTED
    assert _verdict("atrial flutter", meas).verdict == SUPPORTED
    assert np.array_equal(y, flutter_from_beats(x, np.random.default_rng(5), "variable"))


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
