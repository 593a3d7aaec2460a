"""Per-lead signal checks (flat, saturated at the ADC limits, off as the device says, absurd values), numbers that
leave a reader (finite, plausible), library warnings kept out of stderr, and the cost bounds of issue 25's cases
(10^12 Philips channels, 255 Huffman-coded SCP leads, 190 MiB records widened in full)."""

from __future__ import annotations

import json
import re
import struct
import time
import tracemalloc
import warnings

import numpy as np
import pydicom
import pytest
from gem_runtime.constants import LEADS
from gem_runtime.readers import KEEP_SECONDS, EcgReadError, read_ecg
from malformed import synthetic_ecg, write_wfdb
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset


@pytest.fixture(scope="module")
def real(shared_data):
    return shared_data / "real"


def _refused(path, expected: str, **kwargs) -> str:
    with pytest.raises(EcgReadError) as e:
        read_ecg(path, **kwargs)
    message = str(e.value)
    assert expected in message and "\n" not in message, message
    return message


def test_a_lead_at_its_adc_limit_is_named_and_one_stuck_there_refused(tmp_path):
    ecg = synthetic_ecg(500, 10)
    header = write_wfdb(tmp_path, "clip", ecg, 500, LEADS)               # format 16, gain chosen by wfdb
    raw = np.fromfile(tmp_path / "clip.dat", "<i2").reshape(-1, 12).copy()
    raw[1000:1200, 7] = 32767                                             # V2 at the rail for 0.4 s
    raw.tofile(tmp_path / "clip.dat")
    record = read_ecg(header)
    assert record.lead_issues == {"V2": "saturated at its ADC limit for 0.4 s"}
    assert "lead V2: saturated at its ADC limit for 0.4 s" in record.warnings
    raw[:, 9] = np.where(np.arange(len(raw)) % 2, 32767, -32767)[:, None][:, 0]   # V4 rail to rail
    raw.tofile(tmp_path / "clip.dat")
    _refused(header, "V4: saturated (at its ADC limit for 10.0 of 10.0 s)); GEM needs 12 usable leads, "
                     "this record has 11")


def test_the_device_leads_off_marking_is_read(real, tmp_path):
    """The MRx marks every lead inop for 10.56 s: refused. Marked for 2 s on V3 only: kept, and named."""
    _refused(real / "philips" / "129ECORG_leads_off.xml", "off (the device marks it inop for 10.6 s)")
    text = (real / "philips" / "129DYNRG.xml").read_text()
    marked = re.sub(r'(<leadmeasurement leadname="V3".*?<inops>)', r'\1<inop starttime="0" duration="2000"/>',
                    text, count=1, flags=re.DOTALL)
    assert marked != text
    (tmp_path / "v3.xml").write_text(marked)
    record = read_ecg(tmp_path / "v3.xml")
    assert record.lead_issues == {"V3": "marked off by the device for 2.0 s (the device marks it inop for 2.0 s)"}


def test_numbers_that_would_overflow_or_vanish_in_float32_are_refused(tmp_path):
    ecg = synthetic_ecg(500, 4)
    np.save(tmp_path / "big.npy", ecg * 1e37)                          # finite float64, inf after the cast
    _refused(tmp_path / "big.npy", "mV: not an ECG value (a wrong gain or unit)", fs=500)
    np.save(tmp_path / "tiny.npy", ecg * 1e-300)                       # 0 after the cast
    _refused(tmp_path / "tiny.npy", "all 12 leads are flat", fs=500)
    header = write_wfdb(tmp_path, "gain", ecg, 500, LEADS)
    text = header.read_text()
    header.write_text(re.sub(r" [\d.]+\((-?\d+)\)/mV", r" 1e-300(\1)/mV", text))
    _refused(header, "gives 1e+300 mV per count: not an ECG amplifier's scale")


def test_an_aecg_scale_that_is_not_a_number_is_refused(real, tmp_path):
    text = (real / "aecg" / "hl7_example_aecg.xml").read_text()
    broken = re.sub(r'(<scale value=")[^"]*(")', r"\1NaN\2", text, count=1)
    assert broken != text
    (tmp_path / "nan.xml").write_text(broken)
    _refused(tmp_path / "nan.xml", "has no <scale> with a finite value")


def test_implausible_device_values_are_dropped_and_nothing_reaches_stderr(tmp_path, capfd):
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    ds.WaveformAnnotationSequence = []
    for value, code in (("NaN", "5.10.2.1-3"), ("inf", "5.13.5-9"), ("120000", "5.13.5-7")):
        note, concept, unit = Dataset(), Dataset(), Dataset()
        concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = code, "SCPECG", "x"
        unit.CodeValue = "ms"
        note.ConceptNameCodeSequence, note.MeasurementUnitsCodeSequence = [concept], [unit]
        note.NumericValue = value
        ds.WaveformAnnotationSequence = [*ds.get("WaveformAnnotationSequence", []), note]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(tmp_path / "nan.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                 # a warning that escapes would raise
        record = read_ecg(tmp_path / "nan.dcm")
    measurements = record.device.measurements
    assert "rr_ms" not in measurements and "qrs_ms" not in measurements and "pr_ms" not in measurements
    json.dumps(record.device.to_dict(), allow_nan=False)
    assert any("left out the device's implausible" in w for w in record.warnings), record.warnings
    assert capfd.readouterr().err == ""


def test_a_philips_file_declaring_a_trillion_channels_is_refused_at_once(real, tmp_path):
    text = (real / "philips" / "129DYNRG.xml").read_text()
    text = re.sub(r"<numberchannelsallocated>\d+<", "<numberchannelsallocated>1000000000000<", text)
    (tmp_path / "many.xml").write_text(re.sub(r'leadlabels="[^"]*"', 'leadlabels=""', text))
    t0 = time.perf_counter()
    _refused(tmp_path / "many.xml", "numberchannelsallocated is 1000000000000: not a channel count")
    assert time.perf_counter() - t0 < 1


def test_scp_huffman_samples_past_what_the_bytes_hold_are_refused_before_decoding(real, tmp_path):
    data = bytearray((real / "scp" / "ECG_20070321_110542_191010101010.SCP").read_bytes())
    s3 = 349 - 1 + 16                                                   # section 3's body (its pointer says 349)
    for lead in range(data[s3]):
        struct.pack_into("<I", data, s3 + 2 + 9 * lead + 4, 4_000_000)  # each lead "ends" at sample 4 million
    (tmp_path / "long.scp").write_bytes(data)
    t0 = time.perf_counter()
    _refused(tmp_path / "long.scp", "section 6 lead 1 declares 4000000 samples but its")
    assert time.perf_counter() - t0 < 1


def test_a_190_mib_record_is_read_only_as_far_as_it_is_kept(tmp_path):
    """float16 (12, 8 M): 190 MiB on disk, 2.6-3 GB when it was widened in full; now 60 s are read."""
    piece = synthetic_ecg(500, 10).astype(np.float16)
    path = tmp_path / "long.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": True, "shape": (12, 5000 * 1600)})
        f.writelines(piece.T.tobytes() for _ in range(1600))
    tracemalloc.start()
    t0 = time.perf_counter()
    record = read_ecg(path, fs=500)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert record.signal.shape == (12, int(KEEP_SECONDS * 500))
    assert f"read the first {KEEP_SECONDS:.0f} s of 16000.0 s" in record.warnings
    assert peak < 100 * 2**20 and seconds < 5, (peak, seconds)


def test_a_deflated_dicom_is_read_and_one_that_inflates_past_the_limit_is_refused_unread(tmp_path):
    """Deflated Explicit VR Little Endian: pydicom inflates the whole dataset at once (1.1 MiB of file holding 1 GiB
    of zeros: 2.2 GB RSS); the reader counts the inflation first, keeping none of it."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    plain = read_ecg(get_testdata_file("waveform_ecg.dcm"))
    assert np.array_equal(read_ecg(tmp_path / "deflated.dcm").signal, plain.signal)
    ds.add_new(0x00091010, "OB", b"\0" * (256 * 2**20))                 # 256 MiB of zeros: ~0.3 MiB deflated
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    assert (tmp_path / "bomb.dcm").stat().st_size < 2**20
    del ds
    tracemalloc.start()
    _refused(tmp_path / "bomb.dcm", "its deflated dataset inflates to more than 200.0 MiB")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40 * 2**20, peak


def test_a_dicom_channel_at_its_adc_limit_is_named(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = ds.WaveformSequence[0]
    n_channels = int(group.NumberOfWaveformChannels)
    raw = np.frombuffer(group.WaveformData, "<i2").reshape(-1, n_channels).copy()     # (samples, channels)
    fs = float(group.SamplingFrequency)
    raw[1000:1000 + int(0.3 * fs), 1] = 32767                                          # lead II for 0.3 s
    group.WaveformData = raw.tobytes()
    ds.save_as(tmp_path / "clip.dcm")
    record = read_ecg(tmp_path / "clip.dcm")
    assert record.lead_issues == {"II": "saturated at its ADC limit for 0.3 s"}


def test_a_pydicom_warning_goes_into_the_record_not_to_stderr(tmp_path, capfd):
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.Manufacturer = "x" * 100                                    # LO holds 64 characters
        ds.save_as(tmp_path / "long.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = read_ecg(tmp_path / "long.dcm")
    assert "pydicom: The value length (100) exceeds the maximum length of 64 allowed for VR LO." in record.warnings
    assert capfd.readouterr().err == ""
