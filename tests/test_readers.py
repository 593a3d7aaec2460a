"""read_ecg on real PhysioNet and DICOM ECGs, on round-tripped WFDB/.npy files, and on a malformed corpus."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.data import get_testdata_file
from pydicom.waveforms.numpy_handler import multiplex_array

from gem_runtime.constants import LEADS
from gem_runtime.errors import EcgReadError
from gem_runtime.readers import EcgRecord, normalize_lead_name, read_ecg
from malformed import INDEPENDENT, make_malformed_corpus, synthetic_ecg, write_wfdb

PTB_STEP_MV = 1 / 2000        # PTB gain: 2000 adu/mV
DICOM_ECG = get_testdata_file("waveform_ecg.dcm")


# --- real files --------------------------------------------------------------------------------

def test_ptb_reads_as_12_gem_leads_with_frank_leads_dropped(ptb):
    record = read_ecg(ptb)
    assert isinstance(record, EcgRecord)
    assert record.signal.shape == (12, 38400) and record.signal.dtype == np.float32
    assert record.fs == 1000.0 and record.leads == LEADS
    assert record.duration_s == pytest.approx(38.4)
    assert any("dropped leads vx, vy, vz" in w for w in record.warnings)
    # the same samples wfdb gives for the first 12 channels, already in mV
    reference = wfdb.rdrecord(str(ptb.with_suffix(""))).p_signal[:, :12].T
    np.testing.assert_allclose(record.signal, reference, atol=1e-6)
    peaks = np.abs(record.signal).max(axis=1)
    assert np.all((peaks > 0.3) & (peaks < 3.0)), peaks
    lead = dict(zip(LEADS, record.signal))
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 2 * PTB_STEP_MV + 1e-6


@pytest.mark.parametrize("given", ["s0010_re", "s0010_re.dat"])
def test_ptb_record_name_and_signal_file_read_the_same(ptb, physionet, given):
    assert np.array_equal(read_ecg(physionet / given).signal, read_ecg(ptb).signal)


def test_ptb_over_the_size_limit_counts_signal_files(ptb):
    with pytest.raises(EcgReadError, match="signal files are 921600 bytes, over the 100000 bytes limit"):
        read_ecg(ptb, max_bytes=100_000)


def test_mitbih_two_lead_holter_record_is_a_wrong_lead_set(physionet):
    with pytest.raises(EcgReadError) as err:
        read_ecg(physionet / "100.hea")
    message = str(err.value)
    assert "100.hea" in message and "\n" not in message
    assert "missing I, II, V1, V2, V3, V4, V6" in message and "MLII is a modified Holter lead" in message


def test_dicom_ecg_reads_12_leads_in_mv():
    record = read_ecg(DICOM_ECG)
    assert record.signal.shape == (12, 10000) and record.fs == 1000.0 and record.leads == LEADS
    assert record.warnings == ()
    # channels are stored in GEM order in uV with sensitivity 1.25, correction 1, baseline 0
    raw = multiplex_array(pydicom.dcmread(DICOM_ECG), 0, as_raw=True).T      # (12, 10000) counts
    np.testing.assert_allclose(record.signal, raw * 1.25 / 1000, rtol=1e-6)
    peaks = np.abs(record.signal).max(axis=1)
    assert np.all((peaks > 0.3) & (peaks < 3.0)), peaks


def _modified_dicom(tmp_path, change) -> Path:
    ds = pydicom.dcmread(DICOM_ECG)
    change(ds)
    path = tmp_path / "modified.dcm"
    ds.save_as(path)
    return path


def test_dicom_correction_factor_and_baseline_are_applied_once(tmp_path):
    def change(ds):
        channel = ds.WaveformSequence[0].ChannelDefinitionSequence[0]
        channel.ChannelSensitivityCorrectionFactor = 2
        channel.ChannelBaseline = 100          # uV
    path = _modified_dicom(tmp_path, change)
    raw = multiplex_array(pydicom.dcmread(DICOM_ECG), 0, as_raw=True)[:, 0]
    np.testing.assert_allclose(read_ecg(path).signal[0], (raw * 1.25 * 2 + 100) / 1000, rtol=1e-6)


def test_dicom_plain_labels_in_shuffled_order_are_mapped_by_name(tmp_path):
    order = [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]     # channel k now holds lead LEADS[order[k]]

    def change(ds):
        group = ds.WaveformSequence[0]
        for channel, lead in zip(group.ChannelDefinitionSequence, order):
            channel.ChannelSourceSequence[0].CodeMeaning = LEADS[lead]
        group.ChannelDefinitionSequence[8].ChannelSourceSequence[0].CodeMeaning = "Lead -aVR"   # holds aVR
    record = read_ecg(_modified_dicom(tmp_path, change))
    original = read_ecg(DICOM_ECG).signal
    assert record.leads == LEADS
    for k, lead in enumerate(order):
        sign = -1 if k == 8 else 1                     # channel 8 is labelled -aVR: read back inverted
        np.testing.assert_array_equal(record.signal[lead], sign * original[k])
    assert any("inverted Lead -aVR" in w for w in record.warnings)


def test_dicom_skips_median_beat_group_even_when_first(tmp_path):
    def change(ds):
        ds.WaveformSequence = [ds.WaveformSequence[1], ds.WaveformSequence[0]]
    assert read_ecg(_modified_dicom(tmp_path, change)).signal.shape == (12, 10000)


# --- round trips ------------------------------------------------------------------------------

def test_wfdb_250hz_with_8_independent_leads_derives_limb_leads(tmp_path):
    ecg = synthetic_ecg(250, 12)                                    # (12, 3000)
    stored = [LEADS.index(lead) for lead in INDEPENDENT]
    header = write_wfdb(tmp_path, "eight", ecg[stored], 250, INDEPENDENT)
    record = read_ecg(header)
    assert record.fs == 250.0 and record.leads == LEADS and record.signal.shape == (12, 3000)
    assert any("derived III, aVR, aVL, aVF from I and II" in w for w in record.warnings)
    np.testing.assert_allclose(record.signal, ecg, atol=1e-4)       # wrsamp's 16-bit quantization
    lead = dict(zip(LEADS, record.signal.astype(np.float64)))
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-6)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-6)


def test_wfdb_microvolts_are_converted_to_mv(tmp_path):
    ecg = synthetic_ecg(500, 3)
    header = write_wfdb(tmp_path, "micro", ecg * 1000, 500, LEADS, units="uV")
    np.testing.assert_allclose(read_ecg(header).signal, ecg, atol=1e-3)


def test_npy_leads_first_and_samples_first(tmp_path):
    ecg = synthetic_ecg(500, 3).astype(np.float32)
    np.save(tmp_path / "leads_first.npy", ecg)
    np.save(tmp_path / "samples_first.npy", ecg.T)
    first = read_ecg(tmp_path / "leads_first.npy", fs=500)
    second = read_ecg(tmp_path / "samples_first.npy", fs=500)
    np.testing.assert_array_equal(first.signal, ecg)
    np.testing.assert_array_equal(second.signal, ecg)
    assert first.warnings == () and "transposed" in second.warnings[0]


def test_unexpected_library_error_becomes_one_line_ecg_read_error(tmp_path, monkeypatch):
    # format 32 is read through wfdb.rdrecord (formats 16 and 212 take our own fast path)
    header = write_wfdb(tmp_path, "boom", synthetic_ecg(500, 3), 500, LEADS, fmt="32")

    def broken_rdrecord(*args, **kwargs):
        raise RuntimeError("decoder failed\nat byte 12")
    monkeypatch.setattr(wfdb, "rdrecord", broken_rdrecord)
    with pytest.raises(EcgReadError, match=r"boom\.hea: could not read: RuntimeError: decoder failed at byte 12$"):
        read_ecg(header)


@pytest.mark.parametrize("raw, expected", [
    ("Lead I (Einthoven)", ("I", 1.0)), ("Lead aVR", ("aVR", 1.0)), ("-aVR", ("aVR", -1.0)),
    ("v1", ("V1", 1.0)), ("Lead V6", ("V6", 1.0)), ("C3", ("V3", 1.0)), ("DII", ("II", 1.0)),
    ("iii", ("III", 1.0)), ("MLII", None), ("vx", None), ("V4R", None),
])
def test_lead_names_normalize_to_gem_names(raw, expected):
    assert normalize_lead_name(raw) == expected


# --- malformed corpus --------------------------------------------------------------------------

def test_every_malformed_input_is_one_line_ecg_read_error_naming_the_file(tmp_path):
    corpus = make_malformed_corpus(tmp_path)
    assert len(corpus) >= 30
    failures = []
    for path, kwargs, expected in corpus:
        try:
            read_ecg(path, **kwargs)
            failures.append(f"{path.name}: no error")
        except EcgReadError as err:
            message = str(err)
            if "\n" in message or path.name not in message or expected not in message:
                failures.append(f"{path.name}: {message!r} lacks {expected!r}")
        except Exception as err:                       # noqa: BLE001 - any raw error is a failure here
            failures.append(f"{path.name}: raw {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)
