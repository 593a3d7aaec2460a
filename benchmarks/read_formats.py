"""Read time per ECG file format: `read_ecg` on a real file of each format (or one converted here from a real
ECG where none is at hand), median of repeated reads in one process after a first read (imports, page cache).

    python -m benchmarks.read_formats [--reps 20]

A cart reads one file per patient: the goal is under ~50 ms per file. Writes benchmarks/read_formats.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg

from .machine import machine_info, machine_line

HERE = Path(__file__).parent
NOTES = """\
Philips Sierra XML took 134.7 ms (median, Intel Xeon) and 144.7 ms (median of 20 `read_philips` calls, AMD
EPYC) before its waveforms were decoded by our own `runtime/readers/xli.py` from the tree defusedxml has already
parsed: the LZW loop in Python over bytes objects; the bit unpacking, byte unshuffle, delta recurrence and limb
leads in numpy. `sierraecg` re-parsed the file with minidom and decoded one sample at a time in pure Python; it
is now in the `dev` extra, the oracle of `tests/test_xli.py`, which holds our samples equal to its on every lead
of the real file and on XLI payloads made by the test's own LZW encoder (limb leads at the int16 limits too).
SCP-ECG, GE MUSE and HL7 aECG are read by ecgdatakit (the `formats` extra); their first read includes its import.
"""
SHARED = HERE.parent.parent / "shared" / "data"


def _files(tmp: Path) -> list[tuple[str, Path, str]]:
    """(format, path, what it is)."""
    import edfio
    from pydicom.data import get_testdata_file

    ptb = SHARED / "physionet" / "s0010_re.hea"
    out = [("WFDB 16 (PTB s0010_re, 15 leads, 38.4 s at 1000 Hz)", ptb, "real"),
           ("DICOM 12-lead (pydicom waveform_ecg.dcm, 10 s at 1000 Hz)", Path(get_testdata_file("waveform_ecg.dcm")),
            "real"),
           ("Philips Sierra XML 1.03, XLI (11 s at 500 Hz)", SHARED / "vendor" / "philips_129DYPRG.xml", "real")]
    record = read_ecg(ptb)
    edf = tmp / "ptb.edf"
    edfio.Edf([edfio.EdfSignal(record.signal[i].astype(np.float64), record.fs, label=f"ECG {lead}",
                               physical_dimension="mV") for i, lead in enumerate(record.leads)],
              data_record_duration=0.1).write(edf)
    out.append(("EDF+ (PTB converted, 12 leads, 38.4 s at 1000 Hz)", edf, "converted here"))
    try:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from aecg_spec import aecg_xml
        from muse_spec import muse_xml
        from scp_spec import scp_ecg

        ten_s = preprocess_ecg(record)[0]
        muse, aecg, scp = tmp / "ptb_muse.xml", tmp / "ptb_aecg.xml", tmp / "ptb.scp"
        muse.write_text(muse_xml(ten_s, 500))
        aecg.write_text(aecg_xml(ten_s, 500, uv_per_unit=0.5))
        scp.write_bytes(scp_ecg(ten_s, 500, nv_per_count=500, mode=2))
        out.append(("GE MUSE XML (PTB converted, 8 leads, 10 s at 500 Hz)", muse, "converted here"))
        out.append(("HL7 aECG (PTB converted, 12 leads as digits, 10 s at 500 Hz)", aecg, "converted here"))
        out.append(("SCP-ECG (PTB converted, 12 leads, second differences, 10 s at 500 Hz)", scp, "converted here"))
    except ImportError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "read_formats.md")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, kind in _files(Path(tmp)):
            t0 = time.perf_counter()
            read_ecg(path)
            first = (time.perf_counter() - t0) * 1000
            times = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                read_ecg(path)
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((name, kind, first, statistics.median(times), max(times)))
    lines = ["# read_ecg time per format\n", f"machine: {machine_line(machine_info())}  ", f"`python -m benchmarks.read_formats "
             f"--reps {a.reps}`: median of {a.reps} reads after the first (which includes the reader's imports).\n",
             "| format | file | first read ms | median ms | max ms | goal < 50 ms |", "|---|---|---:|---:|---:|---|"]
    lines += [f"| {n} | {k} | {f:.1f} | {m:.1f} | {x:.1f} | {'met' if m < 50 else 'MISSED'} |" for n, k, f, m, x in rows]
    text = "\n".join(lines) + "\n\n" + NOTES
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
