"""A file that declares far more data than it holds (a corrupt or hostile header) is refused in one line, fast,
without allocating what the header claims: one case per format whose header states a size."""
import struct
import time
import tracemalloc

import edfio
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from gem_runtime.constants import LEADS
from gem_runtime.errors import EcgReadError
from gem_runtime.readers import read_ecg
from malformed import synthetic_ecg, write_wfdb
from muse_spec import muse_xml
from scp_spec import LEAD_CODES, record, section, section3, section6

HUGE = 2**31 - 1


def _wfdb(folder):
    header = write_wfdb(folder, "huge", synthetic_ecg(500, 4), 500, LEADS)
    header.write_text(header.read_text().replace("huge 12 500 2000", f"huge 12 500 {HUGE}"))
    return header, "says 2147483647 samples"


def _dicom(folder):
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    ds.WaveformSequence[0].NumberOfWaveformSamples = 2**32 - 1
    ds.save_as(folder / "huge.dcm")
    return folder / "huge.dcm", "says 4294967295 samples"


def _edf(folder):
    signals = [edfio.EdfSignal(synthetic_ecg(500, 4)[i], 500.0, label=f"ECG {lead}", physical_dimension="mV")
               for i, lead in enumerate(LEADS)]
    path = folder / "huge.edf"
    edfio.Edf(signals, data_record_duration=1.0).write(path)
    data = bytearray(path.read_bytes())
    data[236:244] = b"99999999"                       # number of data records
    path.write_bytes(bytes(data))
    return path, "indicates 99999999 data records"


def _muse(folder):
    xml = muse_xml(synthetic_ecg(500, 10), 500)
    path = folder / "huge.xml"
    path.write_text(xml.replace("<LeadSampleCountTotal>5000<", f"<LeadSampleCountTotal>{HUGE}<"))
    return path, "GE MUSE XML"


def _scp(folder):
    counts = np.round(synthetic_ecg(500, 10) * 200).astype(np.int64)           # 5 uV counts
    body = bytearray(section3(5000))
    for k in range(12):                                                          # every lead "ends" at 2**32 - 1
        struct.pack_into("<I", body, 2 + 9 * k + 4, 2**32 - 1)
    assert len(LEAD_CODES) == 12
    path = folder / "huge.scp"
    path.write_bytes(record({3: section(3, bytes(body)), 6: section(6, section6(counts, 500, 5000))}))
    return path, "expected 4294967295"


@pytest.mark.parametrize("make", [_wfdb, _dicom, _edf, _muse, _scp], ids=lambda f: f.__name__[1:])
def test_a_huge_declared_size_is_refused_fast_without_allocating_it(tmp_path, make):
    path, message = make(tmp_path)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(EcgReadError) as info:
        read_ecg(path)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    text = str(info.value)
    assert message in text and path.name in text and "\n" not in text, text
    assert seconds < 2.0 and peak < 64 * 2**20, (seconds, peak)
