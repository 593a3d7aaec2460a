"""The learned wave delineator (issue 24): trained by gem_train on one LUDB half, run by the runtime on ONNX Runtime,
global edges formed over the leads as the cardiologists' convention forms them."""
import numpy as np
import pytest

from gem_runtime.measure import measure_ecg
from gem_runtime.measure.wave_input import WAVE_FS, wave_input
from gem_runtime.measure.waves import EDGE_RANK, MIN_LEADS, P, QRS, T, WaveDelineator, beat_waves, wave_delineator
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg


def test_training_uses_only_the_tune_half(ludb):
    from gem_train.delineator import training_records

    records = training_records(ludb)
    assert len(records) == 50 and all(r % 4 == 1 for r in records)


def test_a_trained_model_is_what_the_runtime_runs(ludb, tmp_path):
    """A few steps on two records: the exported ONNX file loads in the runtime and labels every sample of a
    record it never saw with one of the four classes (the full training: scripts/train_delineator.sh)."""
    pytest.importorskip("torch")
    from gem_train.delineator import train

    out = train(ludb, tmp_path / "d.onnx", steps=4, seed=0, validate=0, simulated=1, max_records=2, batch=4,
                log=lambda *_: None)
    signal, _ = preprocess_ecg(read_ecg(ludb / "3.hea"))
    labels = WaveDelineator(out).labels(signal[:3], 500)
    assert labels.shape == (3, 2500) and set(np.unique(labels)) <= {0, 1, 2, 3}


def test_wave_input_is_normalised_per_lead_at_its_rate():
    x = np.zeros((2, 5000))
    x[0, ::500] = 1.0                              # spikes in mV
    x[1] = 5.0 * x[0]                              # the same, five times larger
    a = wave_input(x, 500)
    assert a.shape == (2, 5000 * WAVE_FS // 500) and a.dtype == np.float32
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)


def _labels(n_leads, spans):
    """(n_leads, 1000) labels with the given per-lead (class, on, off) runs."""
    lab = np.zeros((n_leads, 1000), dtype=np.int64)
    for lead, runs in enumerate(spans):
        for cls, on, off in runs:
            lab[lead, on:off + 1] = cls
    return lab


def test_global_edges_are_the_kth_earliest_onset_and_latest_offset_over_the_leads():
    # R at sample 500 (WAVE_FS); each lead's QRS a sample wider than the one before, P and T likewise
    spans = [[(P, 400 - k, 420 + k), (QRS, 480 - k, 520 + k), (T, 580, 650 + k)] for k in range(12)]
    beat, = beat_waves(_labels(12, spans), np.array([1000]), fs=500)      # input rate 500: twice WAVE_FS
    k_on, k_off = EDGE_RANK[QRS]
    assert beat.qrs == (2 * (480 - 12 + k_on), 2 * (520 + 12 - k_off))
    assert beat.p == (2 * (400 - 12 + EDGE_RANK[P][0]), 2 * (420 + 12 - EDGE_RANK[P][1]))
    assert beat.t[1] == 2 * (650 + 12 - EDGE_RANK[T][1])


def test_a_wave_in_too_few_leads_is_not_one():
    spans = [[(QRS, 480, 520)] + ([(P, 400, 420)] if lead < MIN_LEADS[P] - 1 else []) for lead in range(12)]
    beat, = beat_waves(_labels(12, spans), np.array([1000]), fs=500)
    assert beat.qrs is not None and beat.p is None and beat.t is None


def test_the_committed_model_finds_every_wave_of_a_held_out_record(ludb):
    """LUDB 3 (held out: never trained on): every beat's QRS, P and T found."""
    signal, _ = preprocess_ecg(read_ecg(ludb / "3.hea"))
    meas = measure_ecg(signal, 500)
    assert wave_delineator() is wave_delineator()                      # one session per process
    inside = meas.beat_waves[1:-1]                                     # the record cuts the first and last beats
    assert len(inside) >= 8
    assert all(b.qrs is not None and b.p is not None and b.t is not None for b in inside), inside
