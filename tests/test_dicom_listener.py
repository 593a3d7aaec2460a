"""gem-run dicom-listen against clients no one here wrote: dcmtk's echoscu and storescu send, storescp receives
the forwarded SR, dsrdump reads it; an MLLP receiver in the test takes the HL7 ORU. Real ECGs (pydicom's cart
DICOM, PhysioNet's PTB record converted by our own writer), a CT refused, a broken ECG refused with a failure
status, three senders at once, and a restart that picks up what was stored but not interpreted."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from benchmarks.dicom_bench import dcmtk
from clirun import free_port, running

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))
CT = Path(get_testdata_file("CT_small.dcm"))
REPORTS = ("result.json", "report.sr.dcm", "report.hl7")


def _dcmtk(name: str, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk(name), *args], capture_output=True, text=True, timeout=timeout)


@contextmanager
def listening(bundle: Path, out: Path, *args: str):
    """`gem-run dicom-listen` in a subprocess, ready once echoscu gets its C-ECHO answered: (port, process)."""
    port = free_port()
    ready = lambda: _dcmtk("echoscu", "-aet", "CART", "-aec", "GEMEDGE", "127.0.0.1", str(port)).returncode == 0  # noqa: E731
    with running(["dicom-listen", "--port", port, "--out", out, "--bundle", bundle, "--threads", "1",
                  "--max-new-tokens", "8", *args], ready, "gem-run dicom-listen") as proc:
        yield port, proc


def _store(port: int, *files: Path, aet: str = "CART") -> subprocess.CompletedProcess:
    """storescu -v: it exits 0 whatever the peer answers; the status is in its log ("Received Store Response")."""
    return _dcmtk("storescu", "-v", "-aet", aet, "-aec", "GEMEDGE", "127.0.0.1", str(port), *map(str, files))


def _wait_reports(folder: Path, extra: tuple[str, ...] = (), timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all((folder / f).exists() for f in REPORTS + extra):
        assert time.monotonic() < deadline, f"reports not written in {folder}: {sorted(p.name for p in folder.iterdir())}"
        time.sleep(0.1)


def ack_all(server: socket.socket, received: list) -> None:
    """An EMR interface engine on `server`: an AA for every MLLP message, each kept in `received`."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            data = b""
            while not data.endswith(b"\x1c\r") and (chunk := conn.recv(65536)):
                data += chunk
            if data:
                received.append(data)
                control = data.split(b"|")[9]
                conn.sendall(b"\x0bMSH|^~\\&|EMR|H|GEM|H|20261202||ACK|1|P|2.5\rMSA|AA|" + control + b"\r\x1c\r")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, ptb):
    """The PTB record and the Philips ECG written as 12-lead ECG DICOM by our own writer (new UIDs each)."""
    from gem_runtime.hospital.ecg_dicom import write_ecg_dicom
    from gem_runtime.readers import read_ecg

    folder = tmp_path_factory.mktemp("converted")
    philips = ptb.parents[1] / "vendor" / "philips_129DYPRG.xml"
    return [write_ecg_dicom(read_ecg(ptb), folder / "ptb.dcm", patient_id="PTB-0010"),
            write_ecg_dicom(read_ecg(philips), folder / "philips.dcm", patient_id="PHILIPS-1")]


def test_store_interpret_and_report_with_dcmtk(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    with listening(tiny_bundle, out) as (port, proc):
        sent = _store(port, DICOM)
        assert "Received Store Response (Success)" in sent.stdout + sent.stderr, sent.stdout + sent.stderr
        uid = pydicom.dcmread(DICOM, stop_before_pixels=True).SOPInstanceUID
        folder = out / uid
        assert (folder / "ecg.dcm").read_bytes()[128:132] == b"DICM"   # stored (fsync'ed before the answer)
        _wait_reports(folder)
        result = json.loads((folder / "result.json").read_text())
        assert result["sop_instance_uid"] == uid and result["device"]["model"] == "el250"
        dump = _dcmtk("dsrdump", str(folder / "report.sr.dcm"))
        assert dump.returncode == 0 and f"{result['measurements']['hr_bpm']:g}" in dump.stdout.replace("\"", "")
        assert "ORU^R01" in (folder / "report.hl7").read_text()
        # a CT is refused at association (no ECG context for it), and the listener keeps answering
        refused = _store(port, CT)                             # storescu says so, and still exits 0
        ct_uid = pydicom.dcmread(CT, stop_before_pixels=True).SOPInstanceUID
        assert "no presentation context" in (refused.stdout + refused.stderr).lower() and not (out / ct_uid).exists()
        assert _dcmtk("echoscu", "-aet", "CART", "-aec", "GEMEDGE", "127.0.0.1", str(port)).returncode == 0
    assert proc.returncode == 0


def test_a_broken_ecg_gets_a_failure_status_and_nothing_is_kept(tiny_bundle, tmp_path):
    ds = pydicom.dcmread(DICOM)
    group = ds.WaveformSequence[0]
    group.WaveformData = group.WaveformData[: len(group.WaveformData) // 2]       # half the samples it declares
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    out = tmp_path / "inbox"
    with listening(tiny_bundle, out) as (port, proc):
        sent = _store(port, broken)
        assert "Received Store Response (Error: CannotUnderstand)" in sent.stdout + sent.stderr   # 0xC000
        assert not (out / ds.SOPInstanceUID).exists()
        still = _store(port, DICOM)                                          # still listening
        assert "Received Store Response (Success)" in still.stdout + still.stderr
    assert "refused (0xC000)" in proc.stderr.read()


def test_three_senders_at_once_forward_and_hl7(tiny_bundle, tmp_path, converted):
    archive, out = tmp_path / "archive", tmp_path / "inbox"
    archive.mkdir()
    archive_port, hl7_port = free_port(), free_port()
    storescp = subprocess.Popen([dcmtk("storescp"), "-aet", "ARCHIVE", "-od", str(archive), str(archive_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    messages: list[bytes] = []
    server = socket.create_server(("127.0.0.1", hl7_port))

    threading.Thread(target=ack_all, args=(server, messages), daemon=True).start()
    try:
        with listening(tiny_bundle, out, "--forward", f"127.0.0.1:{archive_port}:ARCHIVE",
                       "--hl7", f"127.0.0.1:{hl7_port}") as (port, proc):
            senders = [subprocess.Popen([dcmtk("storescu"), "-aet", "CART", "-aec", "GEMEDGE", "127.0.0.1", str(port), str(f)])
                       for f in (DICOM, *converted)]
            assert [s.wait(timeout=120) for s in senders] == [0, 0, 0]
            uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in (DICOM, *converted)]
            for uid in uids:
                _wait_reports(out / uid, ("sr.forwarded", "hl7.sent"))
        forwarded = [pydicom.dcmread(p) for p in archive.iterdir()]
        assert sorted(ds.Modality for ds in forwarded) == ["SR"] * 3
        referenced = {ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                      .ReferencedSOPSequence[0].ReferencedSOPInstanceUID for ds in forwarded}
        assert referenced == set(uids) and len(messages) == 3
    finally:
        server.close()
        storescp.terminate()
        storescp.wait(timeout=30)


def test_a_restart_picks_up_what_was_stored_but_not_interpreted(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    uid = pydicom.dcmread(DICOM, stop_before_pixels=True).SOPInstanceUID
    (out / uid).mkdir(parents=True)
    shutil.copy(DICOM, out / uid / "ecg.dcm")                  # as a listener left it when it stopped
    with listening(tiny_bundle, out):
        _wait_reports(out / uid)


def test_callers_not_allowed_and_a_public_bind_without_a_list_are_refused(tiny_bundle, tmp_path):
    with listening(tiny_bundle, tmp_path / "inbox", "--allow-ae", "CART") as (port, _):
        refused = _store(port, DICOM, aet="STRANGER")
        assert "Association Rejected" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
        assert not (tmp_path / "inbox" / pydicom.dcmread(DICOM, stop_before_pixels=True).SOPInstanceUID).exists()
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "dicom-listen", "--port", str(free_port()), "--out",
                        str(tmp_path / "x"), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--allow-ae" in p.stderr and p.stderr.strip().count("\n") == 0


def test_revise_rhythm_reaches_the_sr_and_the_hl7(tmp_path, shared_data):
    """The demo bundle with --revise-rhythm on GE MUSE example2 written as ECG DICOM (a regular sinus rhythm the
    demo model calls atrial fibrillation): the SR and the ORU carry the revised text, the model's own and why."""
    from gem_runtime.bundle import default_bundle
    from gem_runtime.hospital.ecg_dicom import write_ecg_dicom
    from gem_runtime.readers import read_ecg

    ecg = write_ecg_dicom(read_ecg(shared_data / "real" / "muse" / "example2.xml"), tmp_path / "muse2.dcm",
                          patient_id="MUSE-2")
    out = tmp_path / "inbox"
    with listening(default_bundle(), out, "--max-new-tokens", "160", "--revise-rhythm") as (port, proc):
        sent = _store(port, ecg)
        assert "Received Store Response (Success)" in sent.stdout + sent.stderr, sent.stdout + sent.stderr
        folder = out / pydicom.dcmread(ecg, stop_before_pixels=True).SOPInstanceUID
        _wait_reports(folder)
    result = json.loads((folder / "result.json").read_text())
    [revision] = result["revisions"]
    assert revision["original_finding"] == "atrial_fibrillation" and "atrial fibrillation" in result["model_text"]
    assert "atrial fibrillation" not in result["text"].lower()
    dump = _dcmtk("dsrdump", str(folder / "report.sr.dcm")).stdout
    assert "Revised to" in dump and revision["revised"] in dump and "The model's own text" in dump
    hl7 = (folder / "report.hl7").read_text()
    assert f'revised "{revision["original"]}" to "{revision["revised"]}"' in hl7
    assert "the model's own text: Irregularly irregular" in hl7
