"""The simulator's truth is what an independent measurement of its noisy signal finds.

Each check re-measures the produced (12, 5000) signal with simple methods written here (a band-pass
energy R-peak detector, PR-segment baselines, beat-median templates) and compares with EcgTruth.
"""

import math
from collections import Counter

import numpy as np
import pytest
from scipy.signal import butter, filtfilt, find_peaks

from gem_runtime.constants import ECG_SAMPLES, LEADS
from gem_train.simulate import (
    AF, ANT_STE, AVB1, CONDITIONS, INF_STE, LAD, LBBB, LVH, NSR, RAD, RBBB, RHYTHMS, SB, STACH,
    sample_conditions, simulate_ecg, validate_conditions,
)

FS = 500
L = {name: i for i, name in enumerate(LEADS)}


@pytest.fixture(scope="module")
def records():
    """200 records of the corpus mix: (signal, truth)."""
    rng = np.random.default_rng(1234)
    return [simulate_ecg(rng) for _ in range(200)]


def make(conditions, n=12, seed=7):
    rng = np.random.default_rng(seed)
    return [simulate_ecg(rng, conditions) for _ in range(n)]


def detect_r_peaks(lead: np.ndarray) -> np.ndarray:
    """Band-pass 10-40 Hz, squared, 80 ms moving average, peaks above 30% of the 99th percentile."""
    b, a = butter(2, [10 / (FS / 2), 40 / (FS / 2)], btype="band")
    energy = np.convolve(filtfilt(b, a, lead) ** 2, np.ones(40) / 40, mode="same")
    peaks, _ = find_peaks(energy, height=0.3 * np.percentile(energy, 99), distance=int(0.25 * FS))
    return peaks[(peaks > 25) & (peaks < len(lead) - 25)]


def median_beat(signal, truth, before=60, after=300, average=np.median) -> np.ndarray:
    """Beat template (median or mean) aligned at QRS onset, each beat minus its level 4-24 ms
    before the QRS (the PR segment). (12, before + after)"""
    beats = []
    for onset in truth.qrs_onsets:
        if onset - before >= 0 and onset + after <= ECG_SAMPLES:
            seg = signal[:, onset - before:onset + after].astype(np.float64)
            beats.append(seg - seg[:, before - 12:before - 2].mean(axis=1, keepdims=True))
    return average(np.stack(beats), axis=0)


def test_output_shape_dtype_and_canonical_conditions(records):
    for signal, truth in records:
        assert signal.shape == (12, 5000) and signal.dtype == np.float32
        assert np.isfinite(signal).all()
        assert truth.conditions == validate_conditions(truth.conditions)
        assert truth.rhythm in RHYTHMS and truth.conditions[0] == truth.rhythm


def test_limb_lead_identities_hold_with_noise(records):
    for signal, _ in records[:50]:
        i, ii = signal[L["I"]], signal[L["II"]]
        np.testing.assert_allclose(signal[L["III"]], ii - i, atol=1e-5)
        np.testing.assert_allclose(signal[L["aVR"]], -(i + ii) / 2, atol=1e-5)
        np.testing.assert_allclose(signal[L["aVL"]], i - ii / 2, atol=1e-5)
        np.testing.assert_allclose(signal[L["aVF"]], ii - i / 2, atol=1e-5)


def test_detector_on_lead_ii_agrees_with_stated_rate(records):
    """A simple detector misses a beat now and then (low lead II voltage, f-waves); nearly all agree."""
    errors = []
    for signal, truth in records:
        peaks = detect_r_peaks(signal[L["II"]].astype(np.float64))
        hr = 60000.0 / (np.diff(peaks).mean() * 1000.0 / FS)
        errors.append(abs(hr - truth.hr_bpm) / truth.hr_bpm)
        assert abs(truth.hr_bpm - 60000.0 / truth.rr_ms) < 1e-6
    assert np.mean(np.array(errors) < 0.02) >= 0.97 and np.median(errors) < 0.005


def test_rate_classes_and_regularity(records):
    for signal, truth in records:
        rr = np.diff(truth.r_peaks) * 1000.0 / FS
        cv = rr.std() / rr.mean()
        hr = truth.hr_bpm
        if truth.rhythm == AF:
            assert cv > 0.08 and not truth.rr_regular and 60 <= hr <= 150
            assert truth.pr_ms is None and truth.p_ms is None and truth.p_axis_deg is None
        else:
            assert cv < 0.05 and truth.rr_regular
            lo, hi = {NSR: (60, 100), SB: (38, 59), STACH: (101, 150)}[truth.rhythm]
            assert lo <= round(hr) <= hi


def atrial_activity_mv(signal, truth) -> float:
    """RMS of V1 over the 120 ms before each QRS (after the previous T wave), once what is
    time-locked to the QRS (a P wave) is removed with the beat median and muscle noise is smoothed
    away: f-waves survive this, a P wave does not."""
    v1 = signal[L["V1"]].astype(np.float64)
    qt = int(truth.qt_ms * FS / 1000)
    pairs = zip(truth.qrs_onsets, truth.qrs_onsets[1:])
    segments = np.stack([v1[o - 65:o - 5] for prev, o in pairs if prev + qt + 10 < o - 65])
    segments = segments - segments.mean(axis=1, keepdims=True)
    segments = segments - np.median(segments, axis=0)
    smooth = np.stack([np.convolve(seg, np.ones(8) / 8, mode="valid") for seg in segments])
    return float(np.sqrt((smooth ** 2).mean()))


def test_af_has_fibrillatory_baseline_and_no_p_waves():
    af = make([AF], n=10)
    sinus = make([NSR], n=5) + make([SB], n=5)
    assert min(atrial_activity_mv(*r) for r in af) > 0.025
    assert max(atrial_activity_mv(*r) for r in sinus) < 0.02
    for signal, truth in sinus + make([NSR, AVB1], n=4):   # an upright P wave where the truth puts it
        pr, p = int(truth.pr_ms * FS / 1000), int(truth.p_ms * FS / 1000)
        beat = median_beat(signal, truth, before=pr + 10)
        assert beat[L["II"], 10:10 + p].max() > 0.08


def test_qrs_axis_matches_net_area_of_i_and_avf(records):
    errors = []
    for signal, truth in records:
        beat = median_beat(signal, truth, average=np.mean)
        width = int(round(truth.qrs_ms * FS / 1000))
        area_i = beat[L["I"], 60:60 + width].sum()
        area_avf = beat[L["aVF"], 60:60 + width].sum()
        axis = math.degrees(math.atan2(area_avf / (math.sqrt(3) / 2), area_i))
        errors.append(abs((axis - truth.qrs_axis_deg + 180) % 360 - 180))
    assert max(errors) < 10, sorted(errors)[-5:]


def test_axis_classes_have_clean_ranges(records):
    for _, truth in records:
        axis = truth.qrs_axis_deg
        if LAD in truth.conditions:
            assert -90 <= axis <= -30
        elif RAD in truth.conditions:
            assert 90 <= axis <= 180
        else:
            assert -30 < axis < 90


def test_intervals_of_conduction_findings(records):
    for _, truth in records:
        if RBBB in truth.conditions or LBBB in truth.conditions:
            assert truth.qrs_ms >= 120
        else:
            assert truth.qrs_ms <= 110
        if AVB1 in truth.conditions:
            assert truth.pr_ms > 200
        elif truth.rhythm != AF:
            assert 110 <= truth.pr_ms <= 200
        assert truth.qtc_bazett_ms == pytest.approx(truth.qt_ms / math.sqrt(truth.rr_ms / 1000))


def test_bundle_branch_block_morphology():
    for signal, truth in make([NSR, RBBB], n=6):
        beat = median_beat(signal, truth)
        q = slice(60, 60 + int(truth.qrs_ms / 2))
        late = slice(60 + int(truth.qrs_ms / 4), 60 + int(truth.qrs_ms / 2))
        v1 = beat[L["V1"], q]
        assert v1[-15:].max() > 0.2                      # terminal R' in V1
        assert beat[L["I"], late].min() < -0.1           # broad terminal S in I
        assert beat[L["V6"], late].min() < -0.1
    for signal, truth in make([NSR, LBBB], n=6):
        beat = median_beat(signal, truth)
        q = slice(60, 60 + int(truth.qrs_ms / 2))
        assert beat[L["V1"], q].max() < 0.1 and beat[L["V1"], q].min() < -0.5   # QS in V1
        assert beat[L["V6"], q].max() > 0.3 and beat[L["I"], q].max() > 0.2


def sokolow(signal, truth) -> float:
    beat = median_beat(signal, truth)
    q = slice(60, 60 + int(truth.qrs_ms / 2))
    return -beat[L["V1"], q].min() + max(beat[L["V5"], q].max(), beat[L["V6"], q].max())


def test_lvh_meets_sokolow_lyon_and_others_do_not(records):
    for signal, truth in make([NSR, LVH], n=10):
        assert sokolow(signal, truth) > 3.5
        assert truth.sokolow_lyon_mv > 3.5
    for signal, truth in records[:80]:
        if LVH not in truth.conditions:
            assert sokolow(signal, truth) < 3.2


@pytest.mark.parametrize("conditions, up, down", [
    ([NSR, INF_STE], ("II", "III", "aVF"), ("aVL",)),
    ([NSR, ANT_STE], ("V1", "V2", "V3", "V4"), ()),
    ([STACH, INF_STE], ("II", "III", "aVF"), ("aVL",)),
])
def test_st_elevation_at_j_plus_60(conditions, up, down):
    for signal, truth in make(conditions, n=8):
        beat = median_beat(signal, truth)
        j60 = 60 + int(round((truth.qrs_ms + 60) * FS / 1000))
        for lead in up:
            assert beat[L[lead], j60] > 0.07, (lead, beat[L[lead], j60])
            assert truth.st_j60_mv[L[lead]] > 0.1
        for lead in down:
            assert beat[L[lead], j60] < -0.03


def test_plain_records_have_isoelectric_st(records):
    for signal, truth in records:
        if not set(truth.conditions) & {INF_STE, ANT_STE, LBBB, RBBB}:
            assert max(abs(v) for v in truth.st_j60_mv) < 0.05


def test_condition_mix():
    rng = np.random.default_rng(5)
    draws = [sample_conditions(rng) for _ in range(4000)]
    counts = Counter(c for d in draws for c in d)
    assert 0.2 < sum(d == [NSR] for d in draws) / len(draws) < 0.3
    for condition in CONDITIONS:
        assert counts[condition] / len(draws) > 0.08, condition
    for d in draws:
        assert len(d) <= 3 and not (AVB1 in d and AF in d)
        assert not (LBBB in d and RAD in d)


def test_deterministic_for_a_seed():
    a_sig, a_truth = simulate_ecg(np.random.default_rng(99))
    b_sig, b_truth = simulate_ecg(np.random.default_rng(99))
    c_sig, _ = simulate_ecg(np.random.default_rng(100))
    assert np.array_equal(a_sig, b_sig) and a_truth == b_truth
    assert not np.array_equal(a_sig, c_sig)


def test_bad_conditions_raise():
    with pytest.raises(ValueError, match="unknown condition"):
        simulate_ecg(np.random.default_rng(0), ["sinus arrest"])
    with pytest.raises(ValueError, match="first-degree AV block"):
        simulate_ecg(np.random.default_rng(0), [AF, AVB1])


# --- less kind records (gem_train/simulate/stress.py) ---------------------------------------------------------

def test_the_default_corpus_is_unchanged_by_the_stress_module():
    import hashlib
    import json

    h = hashlib.sha256()
    for seed in range(20):
        signal, truth = simulate_ecg(np.random.default_rng(seed))
        h.update(signal.tobytes())
        h.update(json.dumps(truth.to_dict(), sort_keys=True).encode())
    # recorded when issue 24 moved the truth to where the dipole leaves zero (with the 15 uV truth, since before the
    # stress module existed, it was 9bd689d7...ffc7ed81efc6b1c; the class checks read the truth, so a few records
    # are drawn differently too)
    assert h.hexdigest() == "0780b19a551cd730c0e08e0f49b2ca73a1e4020646c24d7b3f0884e07170b970"


def test_each_stressor_does_what_it_names():
    from gem_train.simulate import STRESSORS, Stress

    def draw(name, conditions=None, n=4, seed=3):
        rng = np.random.default_rng(seed)
        return [simulate_ecg(rng, conditions, stress=STRESSORS[name]) for _ in range(n)]

    assert all(30 <= t.hr_bpm <= 44 for _, t in draw("slow rate", [SB]))
    assert all(t.qrs_ms >= 100 and not {LBBB, RBBB} & set(t.conditions) for _, t in draw("IVCD (slurred wide QRS)"))
    plain = simulate_ecg(np.random.default_rng(3), stress=Stress())[0]       # the same draws, no stressor on
    doubled = simulate_ecg(np.random.default_rng(3), stress=Stress(gain=2.0))[0]
    np.testing.assert_allclose(doubled, 2 * plain, rtol=1e-6, atol=1e-6)
    for signal, _ in draw("mains hum 0.1 mV", n=2):
        spectrum = np.abs(np.fft.rfft(signal[1] - signal[1].mean()))
        hz = np.fft.rfftfreq(signal.shape[1], 1 / FS)[np.argmax(spectrum * (np.fft.rfftfreq(signal.shape[1], 1 / FS) > 40))]
        assert hz in (50.0, 60.0)
    for name in STRESSORS:
        for signal, truth in draw(name, [SB] if STRESSORS[name].slow_rate else None, n=2):
            assert signal.shape == (12, ECG_SAMPLES) and np.isfinite(signal).all() and truth.qt_ms > truth.qrs_ms
