"""Malformed ECG inputs, made on the spot, each with what its EcgReadError message must say.

Shared by the reader tests and the CLI tests (exit code 2):

    from malformed import make_malformed_corpus
    for path, kwargs, expected in make_malformed_corpus(tmp_path):
        with pytest.raises(EcgReadError, match=re.escape(expected)):
            read_ecg(path, **kwargs)

Each case breaks one thing in an otherwise valid file, so the message must be about that thing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import wfdb
from pydicom.data import get_testdata_file

from gem_runtime.constants import LEADS

INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def synthetic_ecg(fs: float, seconds: float, seed: int = 0) -> np.ndarray:
    """(12, N) mV, GEM lead order: beats at 72 bpm, Einthoven-consistent limb leads, a little noise."""
    t = np.arange(int(round(fs * seconds))) / fs
    phase = (t % (60 / 72)) - 0.3                       # s from the R peak of the current beat
    qrs = np.exp(-0.5 * (phase / 0.012) ** 2)
    t_wave = np.exp(-0.5 * ((phase - 0.25) / 0.04) ** 2)
    noise = np.random.default_rng(seed).normal(0, 0.01, (8, t.size))
    lead_i = 0.6 * qrs + 0.15 * t_wave + noise[0]
    lead_ii = 1.1 * qrs + 0.25 * t_wave + noise[1]
    chest = [a * qrs + 0.2 * t_wave + n for a, n in zip((-0.9, -0.5, 0.4, 1.0, 1.3, 0.9), noise[2:])]
    limb = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    return np.stack(limb + chest)                        # (12, N)


def write_wfdb(folder: Path, name: str, signal: np.ndarray, fs: float, sig_names, units="mV", fmt="16") -> Path:
    """Write signal (n_leads, N) as WFDB record `name` with wfdb.wrsamp; returns the .hea path."""
    n = len(sig_names)
    wfdb.wrsamp(name, fs=fs, units=[units] * n, sig_name=list(sig_names), p_signal=signal.T,
                fmt=[fmt] * n, write_dir=str(folder))
    return folder / f"{name}.hea"


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))
    return path


def _twelve(folder, name, fs=500, seconds=4, **kwargs):
    return write_wfdb(folder, name, synthetic_ecg(fs, seconds), fs, LEADS, **kwargs)


def _npy(folder: Path, name: str, array) -> Path:
    path = folder / name
    np.save(path, array, allow_pickle=True)
    return path


def _dicom(folder: Path, name: str, change) -> Path:
    """pydicom's 12-lead ECG with `change(ds, rhythm_group)` applied."""
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    change(ds, ds.WaveformSequence[0])
    path = folder / name
    ds.save_as(path)
    return path


def _rename_chest_leads(ds, group):
    for k, channel in enumerate(group.ChannelDefinitionSequence[6:]):
        channel.ChannelSourceSequence[0].CodeMeaning = f"Unknown {k}"


def make_malformed_corpus(tmp_path) -> list[tuple[Path, dict, str]]:
    """Build >= 30 broken inputs under tmp_path: [(path, read_ecg kwargs, substring of the message)]."""
    d = Path(tmp_path) / "malformed"
    d.mkdir()
    cases: list[tuple[Path, dict, str]] = []
    add = lambda path, expected, **kwargs: cases.append((Path(path), kwargs, expected))  # noqa: E731
    good = synthetic_ecg(500, 4)                         # (12, 2000)

    # --- any format ---
    add(d / "absent.hea", "file not found")
    add(d / "absent_record", "file not found")
    (d / "folder.hea").mkdir()
    add(d / "folder.hea", "is a directory")
    (d / "empty.dcm").write_bytes(b"")
    add(d / "empty.dcm", "empty file")
    (d / "empty.npy").write_bytes(b"")
    add(d / "empty.npy", "empty file")
    os.mkfifo(d / "pipe.dcm")                            # was "empty file": a read of it would wait for a writer
    add(d / "pipe.dcm", "not a regular file (a pipe, socket or device)")
    (d / "notes.txt").write_text("I, II, V1\n0.1, 0.2, 0.3\n")
    add(d / "notes.txt", "unknown ECG format (text)")
    (d / "scan.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    add(d / "scan.dcm", "not a DICOM file")
    (d / "export.xml").write_text('<?xml version="1.0"?><AnnotatedECG/>')
    add(d / "export.xml", "HL7 aECG")
    np.save(d / "big.npy", good.astype(np.float32))
    add(d / "big.npy", "over the 1000 bytes limit", fs=500, max_bytes=1000)

    # --- WFDB ---
    header = _twelve(d, "nodat")
    (d / "nodat.dat").unlink()
    add(header, "signal file nodat.dat not found")
    header = _twelve(d, "cut")
    data = (d / "cut.dat").read_bytes()
    (d / "cut.dat").write_bytes(data[: len(data) // 3 + 5])
    add(header, "says 2000 samples but cut.dat holds 666")
    add(_edit(_twelve(d, "liar"), "liar 12 500 2000", "liar 12 500 5000"), "says 5000 samples but liar.dat holds 2000")
    add(_edit(_twelve(d, "slow"), "slow 12 500 2000", "slow 12 50 2000"), "sampling rate 50 Hz is outside")
    add(_edit(_twelve(d, "fast"), "fast 12 500 2000", "fast 12 50000 2000"), "sampling rate 50000 Hz is outside")
    add(_edit(_twelve(d, "nofs"), "nofs 12 500 2000", "nofs 12"), "gives no sampling rate")
    add(_edit(_twelve(d, "nolen"), "nolen 12 500 2000", "nolen 12 500"), "gives no record length")
    add(_twelve(d, "short", seconds=1.5), "record is 1.50 s")
    add(_twelve(d, "otherfs"), "fs=1000 Hz given but the file says 500 Hz", fs=1000)
    add(write_wfdb(d, "holter", good[[1, 10]], 500, ["MLII", "V5"]), "missing I, II, V1, V2, V3, V4, V6")
    add(write_wfdb(d, "limbs", good[:6], 500, LEADS[:6]), "missing V1, V2, V3, V4, V5, V6")
    dup = good[[0, 1, 6, 7, 8, 9, 10, 11, 0]]
    add(write_wfdb(d, "dup", dup, 500, list(INDEPENDENT) + ["Lead I"]), "lead I appears twice")
    flat = good.copy()
    flat[8] = 0.25
    add(write_wfdb(d, "flatv3", flat, 500, LEADS), "flat lead V3")
    add(write_wfdb(d, "allflat", np.full_like(good, 0.1), 500, LEADS), "all 12 leads are flat")
    wfdb.wrsamp("nanlead", fs=500, units=["mV"] * 12, sig_name=list(LEADS), fmt=["16"] * 12,
                d_signal=np.where(np.arange(12) == 4, -32768, (good.T * 200).astype(np.int64)),
                adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(d))
    add(d / "nanlead.hea", "lead aVL is all NaN/Inf")
    add(_edit(_twelve(d, "pressure"), "/mV", "/mmHg"), "channel 'I' has units 'mmHg', not a voltage")
    add(_edit(_twelve(d, "escape"), "escape.dat", "../escape.dat"),
        "signal file '../escape.dat' must be in the same folder as escape.hea")
    add(_edit(_twelve(d, "fmt"), "fmt.dat 16", "fmt.dat 99"), "fmt.dat has WFDB format '99', not supported")
    (d / "garbage.hea").write_bytes(b"\x00\x01\xffbinary\x00")
    add(d / "garbage.hea", "not a WFDB header")
    (d / "nonsense.hea").write_text("this is not a header at all\n")
    add(d / "nonsense.hea", "nonsense.hea")
    (d / "zero.hea").write_text("zero 0 500 2000\n")
    add(d / "zero.hea", "declares no signals")
    # wfdb's parser reads a rate it cannot match as absent, i.e. 250 Hz (it was "resampled from 250 Hz")
    add(_edit(_twelve(d, "negfs"), "negfs 12 500 ", "negfs 12 -500 "), "negfs.hea: sampling rate is -500, not a positive number")

    # --- NumPy ---
    add(_npy(d, "nofs.npy", good), "pass fs")
    add(_npy(d, "flat1d.npy", good[0]), "1 dimensions")
    add(_npy(d, "cube.npy", good[None]), "3 dimensions")
    add(_npy(d, "objects.npy", np.array([[object()] * 1000] * 12)), "object dtype", fs=500)
    add(_npy(d, "complex.npy", good.astype(np.complex64)), "complex", fs=500)
    add(_npy(d, "text.npy", good.astype(str)), "not a real number type", fs=500)
    add(_npy(d, "bools.npy", good > 0), "not a real number type", fs=500)
    add(_npy(d, "threeleads.npy", good[:3]), "array shape (3, 2000)", fs=500)
    path = _npy(d, "trunc.npy", good.astype(np.float32))
    path.write_bytes(path.read_bytes()[:5000])
    add(path, "truncated: header says (12, 2000) float32 (96000 bytes)", fs=500)
    nan_lead = good.copy()
    nan_lead[6] = np.nan
    add(_npy(d, "nanv1.npy", nan_lead), "lead V1 is all NaN/Inf", fs=500)
    inf_lead = good.copy()
    inf_lead[11] = np.inf
    add(_npy(d, "infv6.npy", inf_lead), "lead V6 is all NaN/Inf", fs=500)
    some_inf = good.copy()
    some_inf[7, 500:503] = -np.inf                       # it was measured, with only a warning
    add(_npy(d, "someinf.npy", some_inf), "lead V2 has 3 infinite samples (first at 1.000 s)", fs=500)
    add(_npy(d, "zeros.npy", np.zeros_like(good)), "all 12 leads are flat", fs=500)
    add(_npy(d, "slow.npy", good), "sampling rate 10 Hz is outside", fs=10)
    add(_npy(d, "shortnpy.npy", good), "record is 0.80 s", fs=2500)
    add(_npy(d, "nanfs.npy", good), "not a finite number", fs=float("nan"))

    # --- DICOM ---
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct.dcm")
    add(d / "ct.dcm", "DICOM has no waveform (Modality CT")

    def cut_waveform(ds, group):
        group.WaveformData = group.WaveformData[: len(group.WaveformData) // 2]
    add(_dicom(d, "cutwave.dcm", cut_waveform),
        "says 10000 samples x 12 channels (240000 bytes) but its data holds 120000")
    add(_dicom(d, "nochest.dcm", _rename_chest_leads), "missing V1, V2, V3, V4, V5, V6")

    def pressure_units(ds, group):
        group.ChannelDefinitionSequence[1].ChannelSensitivityUnitsSequence[0].CodeValue = "mm[Hg]"
    add(_dicom(d, "pressure.dcm", pressure_units), "channel 'Lead II' has units 'mm[Hg]'")

    def uncalibrated(ds, group):
        del group.ChannelDefinitionSequence[0].ChannelSensitivity
    add(_dicom(d, "uncal.dcm", uncalibrated), "no sensitivity")

    def slow_rate(ds, group):
        group.SamplingFrequency = 40
    add(_dicom(d, "slowdcm.dcm", slow_rate), "sampling rate 40 Hz is outside")

    def short_record(ds, group):
        group.NumberOfWaveformSamples = 1500
    add(_dicom(d, "shortdcm.dcm", short_record), "record is 1.50 s")

    def mu_law(ds, group):
        group.WaveformSampleInterpretation = "MB"
    add(_dicom(d, "mulaw.dcm", mu_law), "interpretation MB is not supported")
    path = d / "halfdcm.dcm"
    path.write_bytes(Path(get_testdata_file("waveform_ecg.dcm")).read_bytes()[:3000])
    add(path, "halfdcm.dcm")
    return cases


def assert_files_refused(folder: Path, cases: dict[str, tuple[str | bytes, str]]) -> None:
    """Write each {file name: (text or bytes, expected part of the message)} and check read_ecg refuses it in
    one line that names the file."""
    from gem_runtime.errors import EcgReadError
    from gem_runtime.readers import read_ecg

    for name, (text, message) in cases.items():
        path = folder / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        try:
            read_ecg(path)
        except EcgReadError as e:
            assert message in str(e) and name in str(e) and "\n" not in str(e), str(e)
        else:
            raise AssertionError(f"{name} was read")
