"""GEM input preparation: exactly GEM's steps at 500 Hz, plus reported, anti-aliased resampling."""


import numpy as np
import pytest
from scipy.signal import resample_poly

from gem_runtime.constants import ECG_SAMPLES, LEADS
from gem_runtime.errors import EcgReadError
from gem_runtime.preprocess import preprocess_ecg, to_gem_array
from gem_runtime.readers import EcgRecord, read_ecg
from malformed import synthetic_ecg



def _sines(freq_hz: float, fs: float, seconds: float) -> np.ndarray:
    t = np.arange(int(round(fs * seconds))) / fs
    return np.tile(np.sin(2 * np.pi * freq_hz * t), (12, 1))        # (12, N)


def test_500hz_input_is_exactly_gems_preprocessing():
    ecg = synthetic_ecg(500, 12)                                    # (12, 6000)
    gem, warnings = to_gem_array(ecg, 500)
    assert gem.shape == (12, ECG_SAMPLES) and gem.dtype == np.float32
    np.testing.assert_array_equal(gem, ecg[:, :ECG_SAMPLES].astype(np.float32))
    assert warnings == ["truncated to the first 10 s of 12.0 s"]


def test_exactly_10s_at_500hz_is_untouched_and_silent():
    ecg = synthetic_ecg(500, 10)
    gem, warnings = to_gem_array(ecg, 500)
    np.testing.assert_array_equal(gem, ecg.astype(np.float32))
    assert warnings == []


def test_short_record_is_zero_padded_at_the_end():
    ecg = synthetic_ecg(500, 4)                                     # (12, 2000)
    gem, warnings = to_gem_array(ecg, 500)
    np.testing.assert_array_equal(gem[:, :2000], ecg.astype(np.float32))
    assert not gem[:, 2000:].any()
    assert warnings == ["zero-padded from 4.0 s to 10 s"]


def test_nan_and_inf_in_the_used_10s_become_zero_and_are_counted():
    ecg = synthetic_ecg(500, 12)
    ecg[0, 10:17] = np.nan                                          # 7 NaN
    ecg[5, 100:103] = np.inf                                        # 3 Inf
    ecg[7, 5500:5600] = np.nan                                      # after 10 s: cut, not counted
    gem, warnings = to_gem_array(ecg, 500)
    assert np.isfinite(gem).all()
    assert not gem[0, 10:17].any() and not gem[5, 100:103].any()
    assert gem[0, 17] == np.float32(ecg[0, 17])
    assert "10 samples of NaN/Inf set to 0" in warnings


def test_10hz_sine_at_1000hz_resamples_to_the_analytic_500hz_sine():
    gem, warnings = to_gem_array(_sines(10, 1000, 12), 1000)
    analytic = np.sin(2 * np.pi * 10 * np.arange(ECG_SAMPLES) / 500)
    error = np.abs(gem - analytic)
    assert error[:, 50:].max() < 1e-3          # after the first 0.1 s, where the filter sees the edge
    assert error.max() < 2e-2
    assert warnings == ["resampled from 1000 Hz to 500 Hz", "truncated to the first 10 s of 12.0 s"]


def test_360hz_upsamples_to_the_analytic_sine():
    gem, warnings = to_gem_array(_sines(10, 360, 10), 360)
    analytic = np.sin(2 * np.pi * 10 * np.arange(ECG_SAMPLES) / 500)
    assert np.abs(gem - analytic)[:, 50:-50].max() < 2e-3
    assert warnings == ["resampled from 360 Hz to 500 Hz"]


def test_resampling_is_anti_aliased():
    gem, _ = to_gem_array(_sines(300, 1000, 12), 1000)             # above the 250 Hz Nyquist of 500 Hz
    assert np.sqrt(np.mean(gem[:, 50:] ** 2)) < 0.01              # a plain decimation would keep rms 0.7


def test_only_the_first_10s_are_resampled_with_the_same_result():
    long_ecg = synthetic_ecg(360, 60)
    gem, _ = to_gem_array(long_ecg, 360)
    whole = resample_poly(long_ecg, 25, 18, axis=1, padtype="line")[:, :ECG_SAMPLES]
    np.testing.assert_allclose(gem, whole, atol=1e-5)


def test_preprocess_puts_leads_in_gem_order():
    order = LEADS[::-1]
    signal = np.stack([np.full(5000, LEADS.index(lead), dtype=np.float32) for lead in order])
    gem, _ = preprocess_ecg(EcgRecord(signal, 500.0, order, "reversed.npy"))
    np.testing.assert_array_equal(gem[:, 0], np.arange(12, dtype=np.float32))


def test_preprocess_refuses_a_record_without_the_12_leads():
    record = EcgRecord(np.ones((2, 5000), np.float32), 500.0, ("I", "II"), "two.npy")
    with pytest.raises(EcgReadError, match="two.npy: record lacks leads III, aVR"):
        preprocess_ecg(record)


def test_to_gem_array_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(12, N\) signal, got shape \(5000, 12\)"):
        to_gem_array(np.zeros((5000, 12)), 500)


def test_ptb_preprocessed_is_the_first_10s_at_500hz(ptb):
    record = read_ecg(ptb)
    gem, warnings = preprocess_ecg(record)
    assert gem.shape == (12, ECG_SAMPLES) and gem.dtype == np.float32
    assert warnings == ["resampled from 1000 Hz to 500 Hz", "truncated to the first 10 s of 38.4 s"]
    decimated = record.signal[:, ::2][:, :ECG_SAMPLES]              # every other 1000 Hz sample
    assert np.abs(gem - decimated).max() < 0.05                     # mV; only QRS tips lose a little
    for lead in range(12):
        assert np.corrcoef(gem[lead], decimated[lead])[0, 1] > 0.998
    assert 0.3 < np.abs(gem).max() < 3.0
    lead = dict(zip(LEADS, gem))
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 2 / 2000 + 1e-5   # linear: still holds
