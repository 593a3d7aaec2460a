"""The delineation against cardiologists (LUDB) and against the carts' own values (issue 24), on a small fixed subset
(the full run: `gem-bench delineation`, benchmarks/delineation.md); and no numbers from a record without signal.

Before issue 24 (benchmarks/results/delineation/baseline.json) these failed: QRS -21 ms and QT -33 ms against the
cardiologists on the subset below, PR not given on 2 of its 8 records, 44 of 55 cart values within tolerance, and
the Philips leads-off file measured (HR 67, a QRS axis of -140 deg). The threshold-based delineation of the first
issue-24 step (issue24.json) failed the P and T detection (P found in 95% of beats), the P duration and the cart
agreement (69 of 76) pinned here; the learned delineator (runtime/measure/waves.py) gives on the subset: PR -0.5,
P duration -5.5, QRS -10.4, QT -9.3 ms; every P and QRS found, 56 of 57 T waves; 76 of 76 cart values."""
import numpy as np
import pytest

from benchmarks import delineation as bench
from gem_runtime.constants import LEADS
from gem_runtime.errors import NoUsableSignalError
from gem_runtime.measure import MEASUREMENT_KEYS, measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
from gem_train.simulate import NSR, simulate_ecg

SUBSET = (3, 7, 11, 15, 19, 23, 27, 31)      # the first 8 held-out records (number mod 4 == 3), not tuned on
NO_P = (51, 83, 35, 95)       # atrial fibrillation x 2, atrial flutter, ventricular-paced atrial fibrillation


@pytest.fixture(scope="module")
def subset(ludb):
    return [bench.score_record(ludb, r) for r in SUBSET]


def _errors(results, key):
    return [r.ours[key] - r.ref[key] for r in results if r.ours[key] is not None and r.ref[key] is not None]


def test_global_intervals_agree_with_the_cardiologists_on_average(subset):
    # baseline: QRS -21, QT -33, PR +2.5, P duration -26; issue24 (thresholds): P duration -13
    for key, limit in (("qrs_ms", 12.0), ("qt_ms", 15.0), ("pr_ms", 5.0), ("p_ms", 10.0)):
        errors = _errors(subset, key)
        assert len(errors) >= 7 and abs(np.mean(errors)) <= limit, (key, np.round(errors))


def test_pr_is_given_where_the_cardiologists_mark_p_waves(subset):
    with_p = [r for r in subset if r.ref["pr_ms"] is not None]
    missing = [(r.record, r.reasons["pr_ms"]) for r in with_p if r.ours["pr_ms"] is None]
    assert len(with_p) == 8 and not missing, missing


def test_no_pr_in_atrial_fibrillation_flutter_or_a_paced_rhythm(ludb):
    # LUDB 95: an atrial wave in 3 of 11 beats, all among those alike enough to make the median beat
    for record in NO_P:
        r = bench.score_record(ludb, record)
        assert r.ref["pr_ms"] is None and r.ours["pr_ms"] is None, (record, r.ours["pr_ms"])


def test_every_annotated_qrs_is_detected(subset):
    tp, fn, fp = (sum(r.counts["QRS"][i] for r in subset) for i in range(3))
    assert fn == 0 and fp <= 1 and tp > 60, (tp, fn, fp)


def test_p_and_t_waves_are_found_beat_by_beat(subset):
    """Sensitivity and PPV >= 98% for P and T (issue 24's target): the threshold-based delineation found P in 95% of
    the beats and gave ectopic beats none."""
    for wave in ("P", "T"):
        tp, fn, fp = (sum(r.counts[wave][i] for r in subset) for i in range(3))
        assert tp > 50 and tp / (tp + fn) >= 0.98 and tp / (tp + fp) >= 0.98, (wave, tp, fn, fp)


def test_cart_values_within_tolerance_and_the_leads_off_file_refused(shared_data):
    rows = bench.score_carts(shared_data / "real")
    summary = bench.cart_summary(rows)
    off = [(r["file"], v["key"], v["ours"], v["device"]) for r in rows for v in r["values"] if not v["within"]]
    assert summary["values"] >= 40
    # baseline: 44 of 55 (80%); issue24 (thresholds) 69 of 76; the delineator 76 of 76 (its ranks chosen on them)
    assert summary["within"] >= 0.95 * summary["values"], off
    leads_off = [r for r in rows if r["file"].endswith("129ECORG_leads_off.xml")]
    assert all(r.get("no_signal_ok", True) for r in leads_off), leads_off   # refused by the reader, or by us


def test_leads_off_recording_gives_no_numbers(shared_data):
    from gem_runtime.errors import GemEdgeError

    path = shared_data / "real" / "philips" / "129ECORG_leads_off.xml"
    try:
        signal, _ = preprocess_ecg(read_ecg(path))
    except GemEdgeError:
        return                                              # the reader refuses it: no numbers either
    meas = measure_ecg(signal, 500)
    assert all(getattr(meas, k) is None for k in MEASUREMENT_KEYS) and not meas.has_signal
    assert meas.quality.reasons["hr_bpm"].startswith("no usable signal")
    with pytest.raises(NoUsableSignalError, match="129ECORG_leads_off.xml: no usable signal"):
        meas.require_signal(path.name)


def _sinus():
    signal, _ = simulate_ecg(np.random.default_rng(31), [NSR])
    return np.array(signal, dtype=np.float64)


def _refused(x, why):
    meas = measure_ecg(x, 500)
    assert not meas.has_signal and "no_signal" in meas.quality.flags
    assert all(getattr(meas, k) is None for k in MEASUREMENT_KEYS), meas.to_dict()
    assert meas.median_beats is None and why in meas.quality.reasons["qrs_ms"], meas.quality.reasons
    with pytest.raises(NoUsableSignalError):
        meas.require_signal()


def test_flat_signal_is_refused():
    _refused(np.full((12, 5000), 0.3), "flat, off or saturated")


def test_saturated_signal_is_refused():
    x = np.clip(_sinus() * 40.0, -10.0, 10.0)               # a gain far too high: the amplifier at its rails
    _refused(x, "flat, off or saturated")


def test_pure_noise_is_refused():
    _refused(np.random.default_rng(3).normal(0.0, 0.3, (12, 5000)), "no repeating QRS")


def test_electrodes_off_common_mode_trace_is_refused():
    """A cart writes one common-mode trace into every lead whose electrode is off: identical leads carry no ECG."""
    x = _sinus()
    hum = np.random.default_rng(4).normal(0.0, 0.05, 5000)
    for name in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"):
        x[LEADS.index(name)] = hum
    _refused(x, "flat, off or saturated")
    x[LEADS.index("V4")] = _sinus()[LEADS.index("V4")]       # one independent lead left: still nothing to stand on
    _refused(x, "1 of the 8 independent leads (I, II, V1-V6) have signal: V4")


def test_a_real_ecg_with_one_lead_off_is_still_measured():
    x = _sinus()
    x[LEADS.index("V2")] = x[LEADS.index("V3")]             # two leads identical (one electrode swapped onto another)
    meas = measure_ecg(x, 500)
    assert meas.has_signal and meas.qrs_ms is not None and meas.quality.leads_off == ["V2", "V3"]
    assert meas.require_signal() is meas
