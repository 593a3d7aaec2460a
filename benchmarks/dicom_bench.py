"""Per-ECG latency of the DICOM listener, from C-STORE received to SR written, on one warm model.

    gem-bench dicom --bundle B [--ecgs 20] [--out DIR]

The listener runs in this process (so its own clock is read); dcmtk's storescu sends the ECGs, each a copy of
pydicom's 12-lead DICOM under a new SOP Instance UID, one association each, one after another (a cart sends
each ECG as it is recorded). Reported: median and p90 of received -> result.json + SR + HL7 written.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from .machine import machine_info, machine_line


def dcmtk(name: str) -> str:
    """The path of dcmtk's `name` (storescu, echoscu, storescp, dsrdump, ...). The virtual environment's own bin
    folder is passed over: pynetdicom installs apps called storescu and echoscu there, which are not dcmtk."""
    own = Path(sys.executable).parent
    path = shutil.which(name, path=os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                  if p and Path(p) != own))
    if path is None:
        raise FileNotFoundError(f"dcmtk's {name} is not installed: apt-get install -y dcmtk (.ci/run does)")
    return path


@dataclass
class DicomLatency:
    bundle: str
    ecgs: int
    interpreted: int
    median_ms: float
    p90_ms: float
    max_new_tokens: int
    machine: str


def dicom_latency(bundle: Path, ecgs: int = 20, max_new_tokens: int = 256, threads: int = 2) -> DicomLatency:
    from gem_runtime import Interpreter
    from gem_runtime.hospital.listener import EcgListener, ListenerOptions

    with tempfile.TemporaryDirectory() as tmp, Interpreter.load(bundle, threads=threads) as gem:
        sources = []
        for k in range(ecgs):
            ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            sources.append(Path(tmp) / f"ecg{k}.dcm")
            ds.save_as(sources[-1])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        listener = EcgListener(ListenerOptions(out=Path(tmp) / "inbox", port=port, max_new_tokens=max_new_tokens), gem)
        listener.start()
        try:
            for path in sources:
                subprocess.run([dcmtk("storescu"), "-aet", "CART", "-aec", "GEMEDGE", "127.0.0.1", str(port), str(path)],
                               check=True, capture_output=True, timeout=120)
                while listener.stats.interpreted + listener.stats.failed < sources.index(path) + 1:
                    time.sleep(0.005)
        finally:
            listener.stop()
        lat = sorted(listener.stats.latency_ms)
    return DicomLatency(bundle=str(bundle), ecgs=ecgs, interpreted=len(lat), median_ms=round(statistics.median(lat), 1),
                        p90_ms=round(lat[int(0.9 * (len(lat) - 1))], 1), max_new_tokens=max_new_tokens,
                        machine=machine_line(machine_info()))


def write(result: DicomLatency, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dicom.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return path
