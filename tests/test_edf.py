"""EDF / EDF+ / BDF: real ECGs written with edfio (the library's own writer) read back as their source, and
broken files refused in one line."""
import edfio
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from gem_runtime.constants import LEADS
from gem_runtime.errors import EcgReadError
from gem_runtime.measure import MEASUREMENT_KEYS, measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg


def _write(record, path, labels=None, unit="mV", scale=1.0, bdf=False, annotations=()):
    cls, edf_cls = (edfio.BdfSignal, edfio.Bdf) if bdf else (edfio.EdfSignal, edfio.Edf)
    labels = labels or [f"ECG {lead}" for lead in record.leads]
    signals = [cls(record.signal[i].astype(np.float64) * scale, record.fs, label=labels[i], physical_dimension=unit)
               for i in range(len(labels))]
    edf_cls(signals, data_record_duration=0.1, annotations=annotations).write(path)
    return path


def _measured(record) -> dict:
    d = measure_ecg(preprocess_ecg(record)[0], 500).to_dict()
    return {k: d[k] for k in MEASUREMENT_KEYS}


@pytest.mark.parametrize("bdf", [False, True])
def test_a_converted_ecg_reads_and_measures_as_its_source(tmp_path, ptb, bdf):
    source = read_ecg(ptb)
    suffix = ".bdf" if bdf else ".edf"
    back = read_ecg(_write(source, tmp_path / f"ptb{suffix}", bdf=bdf,
                           annotations=[edfio.EdfAnnotation(1.0, None, "recording start")]))
    assert back.leads == LEADS and back.fs == 1000.0 and back.signal.shape == source.signal.shape
    step = np.ptp(source.signal, axis=1).max() / (2 ** (24 if bdf else 16) - 1)
    assert np.abs(back.signal - source.signal).max() <= step           # quantization of the format only
    assert _measured(back) == _measured(source)


def test_units_labels_and_a_dicom_source(tmp_path):
    source = read_ecg(get_testdata_file("waveform_ecg.dcm"))
    plain = [lead for lead in LEADS]                                   # "I", "aVR", ... without "ECG "
    back = read_ecg(_write(source, tmp_path / "dicom.edf", labels=plain, unit="uV", scale=1000.0))
    np.testing.assert_allclose(back.signal, source.signal, atol=2e-3)
    assert _measured(back) == _measured(source)


def test_broken_edf_files_are_one_line(tmp_path, ptb):
    source = read_ecg(ptb)
    good = _write(source, tmp_path / "good.edf")
    cut = tmp_path / "cut.edf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    celsius = _write(source, tmp_path / "celsius.edf", unit="degC")
    eeg = _write(source, tmp_path / "eeg.edf", labels=[f"EEG C{i}" for i in range(12)])
    text = tmp_path / "notes.edf"
    text.write_text("this is not an EDF file\n")
    mixed = tmp_path / "mixed.edf"
    signals = [edfio.EdfSignal(source.signal[i, :10000].astype(np.float64), 1000.0, label=f"ECG {lead}",
                               physical_dimension="mV") for i, lead in enumerate(LEADS)]
    signals[7] = edfio.EdfSignal(source.signal[7, :5000].astype(np.float64), 500.0, label="ECG V2",
                                 physical_dimension="mV")
    edfio.Edf(signals, data_record_duration=1.0).write(mixed)
    for path, message in ((cut, "not a readable EDF/BDF file"), (celsius, "units 'degC', not a voltage"),
                          (eeg, "wrong lead set for a 12-lead ECG"), (text, "not an EDF/BDF file"),
                          (mixed, "sampled at different rates (500, 1000 Hz)")):
        with pytest.raises(EcgReadError) as e:
            read_ecg(path)
        assert message in str(e.value) and path.name in str(e.value) and "\n" not in str(e.value), str(e.value)
