"""Our WFDB fast path equals the wfdb package: header fields and physical samples, bit for bit."""

from pathlib import Path

import numpy as np
import pytest
import wfdb

from gem_runtime.constants import LEADS
from gem_runtime.readers import read_ecg
from gem_runtime.readers.wfdb_fast import can_read_fast, parse_header, read_physical
from malformed import synthetic_ecg, write_wfdb



def _same_as_wfdb(hea: Path):
    h = parse_header(hea.read_text())
    assert h is not None
    ref = wfdb.rdheader(str(hea.with_suffix("")))
    assert (h.n_sig, h.fs, h.sig_len) == (ref.n_sig, ref.fs, ref.sig_len)
    for field in ("file_name", "fmt", "adc_gain", "baseline", "units", "sig_name"):
        assert getattr(h, field) == list(getattr(ref, field)), field
    channels = [c for c in range(h.n_sig) if h.file_name[c] == h.file_name[0]]   # PTB: .dat holds 12 of 15
    assert can_read_fast(h, channels)
    assert not can_read_fast(h, list(range(h.n_sig))) or len(channels) == h.n_sig
    got = read_physical(h, hea.parent, channels)
    want = wfdb.rdrecord(str(hea.with_suffix("")), channels=channels, physical=True).p_signal.T
    np.testing.assert_array_equal(got, want)          # NaN in the same places, every other value identical
    # a subset of channels in another order reads the same rows
    sub = [channels[-1], 0]
    np.testing.assert_array_equal(read_physical(h, hea.parent, sub), want[sub])
    return got


def test_ptb_format_16_equals_wfdb(physionet):
    got = _same_as_wfdb(physionet / "s0010_re.hea")
    assert got.shape == (12, 38400)                      # vx, vy, vz are in s0010_re.xyz


def test_mitbih_format_212_with_default_baseline_equals_wfdb(physionet):
    # "100.dat 212 200 11 1024 995 ...": no (baseline) and no /units -> baseline = adc_zero, mV
    got = _same_as_wfdb(physionet / "100.hea")
    assert got.shape == (2, 650000)


@pytest.mark.parametrize("fmt", ["16", "212"])
def test_written_records_with_invalid_samples_and_odd_lengths_equal_wfdb(tmp_path, fmt):
    x = synthetic_ecg(500, 2.0)[:, :999]                 # odd sample count: 212 ends on half a pair
    x[3, 10:20] = np.nan                                 # written as WFDB's invalid sample value
    hea = write_wfdb(tmp_path, f"rec{fmt}", x, 500, LEADS, fmt=fmt)
    got = _same_as_wfdb(hea)
    assert np.isnan(got[3, 10:20]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()


def test_byte_offset_and_zero_gain(tmp_path):
    x = synthetic_ecg(500, 2.0)
    hea = write_wfdb(tmp_path, "off", x, 500, LEADS)
    dat = tmp_path / "off.dat"
    dat.write_bytes(b"\x00" * 64 + dat.read_bytes())
    lines = hea.read_text().splitlines()
    lines = [lines[0]] + [ln.replace("off.dat 16 ", "off.dat 16+64 ", 1) for ln in lines[1:]]
    lines[1] = lines[1].replace(lines[1].split()[2].split("(")[0] + "(", "0(", 1)   # gain 0 means 200
    hea.write_text("\n".join(lines) + "\n")
    h = _same_as_wfdb(hea)
    assert h.shape == (12, 1000)
    assert parse_header(hea.read_text()).adc_gain[0] == 200.0


@pytest.mark.parametrize("text", [
    "multi/2 12 500 5000\n",                                              # multi-segment
    "r 1 500/1000 5000\nr.dat 16 200(0)/mV 16 0 0 0 0 I\n",               # counter frequency
    "r 1 500 5000\nr.dat 16x2 200(0)/mV 16 0 0 0 0 I\n",                  # 2 samples per frame
    "r 1 500 5000\nr.dat 16:3 200(0)/mV 16 0 0 0 0 I\n",                  # skew
    "r 1 500 5000\nr.dat 16 200(0)/mV\n",                                 # fields missing
    "r 2 500 5000\nr.dat 16 200(0)/mV 16 0 0 0 0 I\n",                    # fewer signal lines than n_sig
    "r 1 500 5000\nr.dat 16 200(0)/mV 16 0 0 0 0 I # note\n",             # comment inside a line
])
def test_unusual_headers_are_left_to_wfdb(text):
    assert parse_header(text) is None


def test_a_format_we_do_not_decode_falls_back_to_wfdb(tmp_path):
    x = synthetic_ecg(500, 2.0)
    hea = write_wfdb(tmp_path, "f32", x, 500, LEADS, fmt="32")
    h = parse_header(hea.read_text())
    assert h is not None and not can_read_fast(h, list(range(12)))
    rec = read_ecg(hea)                                   # read through wfdb.rdrecord
    want = wfdb.rdrecord(str(hea.with_suffix(""))).p_signal.T
    np.testing.assert_allclose(rec.signal, want, atol=1e-6)


def test_format_212_with_an_odd_sample_total_equals_wfdb(tmp_path):
    # 3 signals x 999 samples: the last byte triple holds half a pair
    x = synthetic_ecg(500, 2.0)[:3, :999]
    hea = write_wfdb(tmp_path, "odd212", x, 500, ["I", "II", "V1"], fmt="212")
    assert _same_as_wfdb(hea).shape == (3, 999)
