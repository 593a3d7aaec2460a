"""gem-run dicom-listen against careless and hostile senders (issue 26): a re-sent instance with a corrected
patient, an ECG that cannot be reported, a Modality that tries to forge a log line, wrong called AE titles,
callers not allowed, more associations than allowed; patient files 0600 in 0700 folders. A real listener
process on a loopback port with the tiny bundle; pynetdicom as the sender, so that each dataset and title is
exactly what the test says."""
from __future__ import annotations

import json
import re
import socket
import stat
import threading
import time
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from clirun import free_port, small_disk
from test_dicom_listener import ack_all, listening

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))
REPORTS = ("result.json", "report.sr.dcm", "report.hl7")
FORGED = "gem-run dicom-listen: stored 1.2.3 from CART7 10.0.0.7"


def _dataset(**changes) -> pydicom.Dataset:
    """pydicom's el250 ECG with a fresh SOP Instance UID (unless given) and the changes; None deletes."""
    ds = pydicom.dcmread(DICOM)
    uid = changes.pop("SOPInstanceUID", None) or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    for name, value in changes.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    return ds


def _associate(port: int, calling: str = "CART", called: str = "GEMEDGE"):
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(DICOM_SOP_CLASS, pydicom.uid.ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=called)


def _send(port: int, ds: pydicom.Dataset, calling: str = "CART", called: str = "GEMEDGE") -> int | None:
    """The C-STORE status the listener answers, or None where the association is rejected."""
    assoc = _associate(port, calling, called)
    if not assoc.is_established:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # a hostile value is what the test sends
        reply = assoc.send_c_store(ds)
    assoc.release()
    return int(reply.Status)


DICOM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.9.1.1"


def _wait(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def _stderr_lines(proc) -> list[str]:
    from clirun import terminate

    terminate(proc, 60)
    return proc.stderr.read().splitlines()


# --- defect 7: a re-sent SOP Instance UID kept its stale reports ---
def test_an_instance_sent_again_with_a_corrected_patient_is_reported_again(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    uid = generate_uid()
    with listening(tiny_bundle, out) as (port, proc):
        assert _send(port, _dataset(SOPInstanceUID=uid, PatientID="WRONG-1", PatientName="Wrong^Patient")) == 0
        folder = out / uid
        _wait(lambda: all((folder / f).exists() for f in REPORTS), "the first reports")
        assert _send(port, _dataset(SOPInstanceUID=uid, PatientID="RIGHT-2", PatientName="Right^Patient")) == 0
        _wait(lambda: all((folder / f).exists() for f in REPORTS)
              and "RIGHT-2" in (folder / "report.hl7").read_text(), "the reports of the corrected instance")
        sr = pydicom.dcmread(folder / "report.sr.dcm")
        assert (sr.PatientID, str(sr.PatientName)) == ("RIGHT-2", "Right^Patient")
        assert "WRONG-1" not in (folder / "report.hl7").read_text()
        assert json.loads((folder / "result.json").read_text())["sop_instance_uid"] == uid
        # the same bytes again: acknowledged, nothing made again
        before = {f: (folder / f).stat().st_mtime_ns for f in REPORTS}
        assert _send(port, _dataset(SOPInstanceUID=uid, PatientID="RIGHT-2", PatientName="Right^Patient")) == 0
        time.sleep(1)
        assert {f: (folder / f).stat().st_mtime_ns for f in REPORTS} == before
        # patient data: 0600 files in 0700 folders
        for path in (out, folder):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    lines = _stderr_lines(proc)
    assert any("(the same bytes again)" in line for line in lines), lines


# --- defect 8: an ECG acknowledged that can never be reported ---
def test_an_ecg_an_sr_could_not_reference_is_refused_before_the_success_status(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    no_study, bad_series = _dataset(StudyInstanceUID=None), _dataset(SeriesInstanceUID="1.2.x")
    two_names = _dataset(PatientName="A^B\\C^D")                  # its SR and ORU failed on every start
    with listening(tiny_bundle, out) as (port, proc):
        assert _send(port, no_study) == 0xA900
        assert _send(port, bad_series) == 0xA900
        assert _send(port, two_names) == 0xA900
        assert not any((out / ds.SOPInstanceUID).exists() for ds in (no_study, bad_series, two_names))
        ok = _dataset()
        assert _send(port, ok) == 0                                  # still listening, and a good one reported
        _wait(lambda: all((out / ok.SOPInstanceUID / f).exists() for f in REPORTS), "the good one's reports")
    lines = _stderr_lines(proc)
    assert any("refused (0xA900)" in line and "no StudyInstanceUID" in line for line in lines), lines
    assert any("refused (0xA900)" in line and "PatientName holds 2 values (DICOM allows one)" in line
               for line in lines), lines
    assert not any("failed" in line and "interpreting" in line for line in lines), lines


# --- defect 9: a Modality holding CR/LF split the refusal line and forged a "stored" line ---
def test_a_dataset_cannot_forge_a_log_line(tiny_bundle, tmp_path):
    forged = _dataset(WaveformSequence=None, Modality=f"ECG\r\n{FORGED}\r\n")
    with listening(tiny_bundle, tmp_path / "inbox") as (port, proc):
        assert _send(port, forged) == 0xC000
    lines = _stderr_lines(proc)
    refusal = [line for line in lines if "refused (0xC000)" in line]
    assert len(refusal) == 1 and FORGED in refusal[0], lines                 # the text kept, on the one line
    assert not any(line.startswith((FORGED, "gem-run dicom-listen: stored 1.2.3"))
                   for line in lines), lines


# --- smaller: the called AE title, callers not allowed and the association limit, each logged ---
def test_rejected_associations_are_logged_with_the_caller_and_the_reason(tiny_bundle, tmp_path):
    with listening(tiny_bundle, tmp_path / "inbox", "--allow-ae", "CART", "--max-associations", "2") as (port, proc):
        assert _send(port, _dataset(), called="SOMEONE") is None
        assert _send(port, _dataset(), calling="STRANGER") is None
        held = [_associate(port) for _ in range(2)]
        assert all(a.is_established for a in held)
        third = _associate(port)
        assert not third.is_established
        for a in held:
            a.release()
        _wait(lambda: _send(port, _dataset()) == 0, "an association once the others closed", 30)
    lines = [line for line in _stderr_lines(proc) if "rejected association" in line]
    assert any("called AE title 'SOMEONE' is not ours (GEMEDGE)" in line and "CART 127.0.0.1" in line
               for line in lines), lines
    assert any("calling AE title 'STRANGER' is not allowed" in line and "127.0.0.1" in line for line in lines), lines
    assert any("--max-associations 2" in line for line in lines), lines


def test_three_at_once_within_the_limit_are_all_stored(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    sets = [_dataset() for _ in range(3)]
    with listening(tiny_bundle, out, "--max-associations", "3") as (port, proc):
        codes: list = []
        threads = [threading.Thread(target=lambda d=d: codes.append(_send(port, d))) for d in sets]
        [t.start() for t in threads]
        [t.join() for t in threads]
        if codes != [0, 0, 0]:                                       # say why (once seen under CI load: 2 of 3)
            why = [line for line in _stderr_lines(proc) if "rejected association" in line or "connection" in line]
            raise AssertionError(f"{codes}: {why}")
        for ds in sets:
            assert (out / ds.SOPInstanceUID / "ecg.dcm").exists()


# --- pynetdicom counts an association against its limit until its thread ends, after the release: in CI a cart's
#     third association within --max-associations 3 was rejected while the readiness probe's echo was finishing ---
def _second_association_after_a_lingering_release(ae) -> tuple[bool, list[str]]:
    """A limit of 1 association and 1 per host; the first association is released and its thread then held 1.5 s
    (as a loaded machine holds it); is the second, opened at once, accepted?"""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    from gem_runtime.hospital.connections import host_limited_server

    refused: list[str] = []
    ae.add_supported_context(Verification)
    ae.maximum_associations = 1
    port = free_port()
    server = ae.make_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_RELEASED, lambda event: time.sleep(1.5))],
                            server_class=host_limited_server(1, refused.append))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cart = AE(ae_title="CART")
        cart.add_requested_context(Verification)
        first = cart.associate("127.0.0.1", port)
        assert first.is_established
        first.release()
        second = cart.associate("127.0.0.1", port)
        accepted = second.is_established
        if accepted:
            second.release()
        return accepted, refused
    finally:
        server.shutdown()


def test_an_association_that_is_over_but_still_finishing_holds_no_slot():
    from pynetdicom import AE

    from gem_runtime.hospital.connections import counting_ae

    assert _second_association_after_a_lingering_release(AE()) == (False, [])   # pynetdicom's own count rejects it
    assert _second_association_after_a_lingering_release(counting_ae("GEMEDGE")) == (True, [])


# --- a dataset past the size limit was gathered whole in memory (300 MiB: 805 MB RSS) before it was refused ---
def test_a_message_past_max_bytes_is_aborted_while_it_arrives_and_nothing_is_stored(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    big = _dataset()
    big.add_new(0x00091010, "OB", b"\0" * (8 * 2**20))            # 8 MiB of a private element
    with listening(tiny_bundle, out, "--max-bytes", str(2 * 2**20)) as (port, proc):
        assoc = _associate(port)
        reply = assoc.send_c_store(big)
        assert "Status" not in reply, reply                          # no status: aborted, not refused once whole
        _wait(lambda: not assoc.is_established, "the association to end", 10)
        assert not (out / big.SOPInstanceUID).exists()
        assoc = _associate(port)                                     # the limit is per message, not per association:
        fours = [_dataset() for _ in range(4)]                       # four of 1.1 MiB, 4.4 MiB in all, are stored
        for ds in fours:
            ds.add_new(0x00091010, "OB", b"\0" * (800 * 2**10))
        assert [int(assoc.send_c_store(ds).Status) for ds in fours] == [0, 0, 0, 0]
        assoc.release()
    lines = [line for line in _stderr_lines(proc) if "aborted association" in line]
    assert lines and "CART 127.0.0.1: a DICOM message of more than 2.0 MiB (--max-bytes)" in lines[0], lines


def test_a_message_trickled_past_the_message_timeout_is_aborted(tiny_bundle, tmp_path):
    """A command sent as one 8-byte fragment every half second, never the last: aborted ~2 s after it began."""
    with listening(tiny_bundle, tmp_path / "inbox", "--message-timeout", "2") as (port, proc):
        assoc = _associate(port)
        assert assoc.is_established
        context = assoc.accepted_contexts[0].context_id
        item = (2 + 8).to_bytes(4, "big") + bytes([context, 0x01]) + b"\0" * 8      # a command PDV, not the last
        pdu = bytes([0x04, 0]) + len(item).to_bytes(4, "big") + item
        t0 = time.monotonic()
        while not assoc.is_aborted and time.monotonic() - t0 < 20:
            try:
                assoc.dul.socket.send(pdu)
            except OSError:
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
        assert assoc.is_aborted or not assoc.is_established, "still open after 20 s of a trickled message"
        assert took < 8, took
        assert _send(port, _dataset()) == 0
    lines = [line for line in _stderr_lines(proc) if "aborted association" in line]
    # the limit is checked as each PDU arrives (every 0.5 s here), so the line says 2 s, or 3 under CI load
    said = re.search(r"a DICOM message still arriving after (\d+) s \(--message-timeout 2\)", lines[0] if lines else "")
    assert said and 2 <= int(said[1]) < 8, lines


# --- connections that never finish a PDU held association slots: 3 such kept a cart out of a listener of 2 ---
def test_a_host_holding_stalled_connections_neither_locks_out_another_nor_keeps_them(tiny_bundle, tmp_path):
    from pynetdicom import AE

    args = ("--max-associations", "3", "--max-associations-per-host", "2", "--message-timeout", "2")
    with listening(tiny_bundle, tmp_path / "inbox", *args) as (port, proc):
        stalled = []
        for _ in range(3):                                           # an A-ASSOCIATE-RQ header, then nothing
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(bytes([0x01, 0]) + (1000).to_bytes(4, "big"))
            stalled.append(s)
        stalled[2].settimeout(5)
        assert stalled[2].recv(10) == b""                            # the third from this host: shut at once
        ae = AE(ae_title="CART")
        ae.add_requested_context(DICOM_SOP_CLASS, pydicom.uid.ExplicitVRLittleEndian)

        def another_host_stores() -> bool:                           # 127.0.0.2: another host on loopback
            assoc = ae.associate("127.0.0.1", port, ae_title="GEMEDGE", bind_address=("127.0.0.2", 0))
            if not assoc.is_established:
                return False
            status = int(assoc.send_c_store(_dataset()).Status)
            assoc.release()
            return status == 0

        _wait(another_host_stores, "another host's store while two connections stall", 10)
        t0 = time.monotonic()
        for s in stalled[:2]:                                        # closed within 2 + 2 s without a PDU
            s.settimeout(15)
            assert s.recv(10) == b""
        assert time.monotonic() - t0 < 10
        assoc = _associate(port)                                     # an association, then a P-DATA-TF PDU of
        assert assoc.is_established                                  # 1000 bytes sent a byte every half second
        raw = assoc.dul.socket.socket
        raw.sendall(bytes([0x04, 0]) + (1000).to_bytes(4, "big"))
        t0 = time.monotonic()
        while assoc.is_established and time.monotonic() - t0 < 20:
            try:
                raw.sendall(b"\0")
            except OSError:
                break
            time.sleep(0.5)
        assert time.monotonic() - t0 < 10, "a PDU trickled a byte at a time held its association"
    lines = _stderr_lines(proc)
    assert any("refused connection: 127.0.0.1: it holds 2 already (--max-associations-per-host 2)" in line
               for line in lines), lines
    assert any("shut connection: 127.0.0.1: no complete PDU for" in line for line in lines), lines


# --- pynetdicom read a PDU of whatever length its header declared into memory whole: one connection that claimed
# 4 GiB and sent zeros grew the listener by 3.5 GB in 6 s, before it was an association ---
def _stream_after_header(sock: socket.socket, header: bytes, limit: int = 64 * 2**20) -> int:
    """Send the header, then zeros until the listener closes the connection or `limit` bytes are out: bytes sent."""
    sock.sendall(header)
    sent, chunk = 0, b"\0" * 2**20
    sock.settimeout(10)
    try:
        while sent < limit:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def test_a_pdu_declaring_more_than_the_listener_reads_is_refused_before_its_body(tiny_bundle, tmp_path):
    from benchmarks.serve_bench import rss_mb

    huge = (2**32 - 16).to_bytes(4, "big")
    with listening(tiny_bundle, tmp_path / "inbox") as (port, proc):
        before = rss_mb(proc.pid)
        with socket.create_connection(("127.0.0.1", port)) as s:             # an A-ASSOCIATE-RQ of 4 GiB
            sent_before_association = _stream_after_header(s, bytes([0x01, 0]) + huge)
        assoc = _associate(port)                                             # a P-DATA-TF PDU past the 16382
        assert assoc.is_established                                          # bytes the listener states
        assert assoc.acceptor.maximum_length == 16382
        past = bytes([0x04, 0]) + (16383).to_bytes(4, "big")
        sent_in_association = _stream_after_header(assoc.dul.socket.socket, past)
        _wait(lambda: not assoc.is_established, "the association to end", 10)
        grew = rss_mb(proc.pid) - before
        assert _send(port, _dataset()) == 0                                  # and a cart is served as before
    assert sent_before_association < 32 * 2**20 and sent_in_association < 32 * 2**20, \
        (sent_before_association, sent_in_association)                       # closed, not read to the 64 MiB
    assert grew < 40, f"the listener grew {grew:.0f} MB"
    lines = _stderr_lines(proc)
    assert any("shut connection: 127.0.0.1: A-ASSOCIATE-RQ PDU of 4294967280 bytes declared, over the 1048576 we "
               "read" in line for line in lines), lines
    assert any("P-DATA-TF PDU of 16383 bytes declared, over the 16382 we read (the maximum length we state in the "
               "association)" in line for line in lines), lines
    assert not any("shorter than expected" in line for line in lines), lines     # one line each, ours
    assert any("stored 1, refused 0" in line for line in lines), lines            # the SR was made, and highdicom's
    assert not any("copy attributes" in line for line in lines), lines            # 7 INFO lines for it are not logged


def test_an_archive_answering_with_a_pdu_past_what_we_read_fails_the_forward_without_reading_it(caplog):
    """The SR's own association: an archive whose A-ASSOCIATE-AC declares 4 GiB is shut after its header."""
    from gem_runtime.errors import GemEdgeError
    from gem_runtime.hospital.delivery import send_sr

    caplog.set_level("WARNING", logger="gem_runtime.hospital")    # whatever an earlier test left on the root logger
    server = socket.create_server(("127.0.0.1", 0))
    sent: list[int] = []

    def hostile_archive():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)                                                 # the A-ASSOCIATE-RQ
            sent.append(_stream_after_header(conn, bytes([0x02, 0]) + (2**32 - 16).to_bytes(4, "big")))

    thread = threading.Thread(target=hostile_archive, daemon=True)
    thread.start()
    t0 = time.monotonic()
    with server, pytest.raises(GemEdgeError, match="failed after 1 tries"):
        send_sr(DICOM, "127.0.0.1", server.getsockname()[1], "ARCHIVE", "GEMEDGE", retries=1, backoff_s=0)
    thread.join(30)
    assert time.monotonic() - t0 < 30 and sent and sent[0] < 32 * 2**20, sent
    assert any("shut connection: 127.0.0.1: A-ASSOCIATE-AC PDU of 4294967280 bytes declared, over the 1048576 we read"
               in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_pdus_are_followed_across_any_split_of_the_stream():
    """PduBoundedSocket reads headers split over recv calls and bodies that end mid-chunk, as TCP delivers them."""
    from gem_runtime.hospital.connections import PduBoundedSocket

    ok = bytes([0x04, 0]) + (10).to_bytes(4, "big") + b"x" * 10
    over = bytes([0x04, 0]) + (11).to_bytes(4, "big")
    a, b = socket.socketpair()
    with a, b:
        logged: list[str] = []
        bounded = PduBoundedSocket(b, lambda: 10, lambda: "peer", logged.append)
        a.sendall(ok + ok[:3])
        assert bounded.recv(len(ok) + 3) == ok + ok[:3] and not bounded.refused
        a.sendall(ok[3:] + over[:4])
        for n in (1, 2, 100):                                                # header and body in odd pieces
            assert bounded.recv(n)
        assert not bounded.refused
        a.sendall(over[4:] + b"y" * 11)
        assert bounded.recv(2) == over[4:] and bounded.refused
        assert bounded.recv(100) == b""                                      # nothing of the body is read
    assert logged == ["shut connection: peer: P-DATA-TF PDU of 11 bytes declared, over the 10 we read "
                      "(the maximum length we state in the association)"]


# --- a disk that filled up: ECGs were taken with a success status whose reports could not be written, each failure
# logged with a traceback, and a refused ECG left an empty folder ---
def test_an_ecg_that_would_go_below_the_free_disk_kept_is_refused_and_nothing_of_it_is_kept(tiny_bundle, tmp_path):
    out = tmp_path / "inbox"
    ds = _dataset()
    with listening(tiny_bundle, out, "--min-free-mb", str(10**9)) as (port, proc):     # 1 PB kept free
        assert _send(port, ds) == 0xA700                                   # refused: out of resources
        assert list(out.iterdir()) == []
    lines = [line for line in _stderr_lines(proc) if "refused (0xA700)" in line]
    assert len(lines) == 1 and f"CART 127.0.0.1: {ds.SOPInstanceUID}: not stored: " in lines[0], lines
    assert "MiB free under" in lines[0] and "1000000000 MiB are kept free for reports (--min-free-mb)" in lines[0]


@pytest.mark.parametrize("min_free_mb", [0, 1])
def test_a_full_disk_refuses_what_it_cannot_report_and_says_so_in_one_line(tiny_bundle, tmp_path, min_free_mb):
    """12 ECGs of 291 kB into 3 MiB: with 1 MiB kept free every one taken is reported; with none kept the disk
    fills, and a report that cannot be written is one log line, the ECG kept for the next start."""
    with small_disk(tmp_path / "disk", "3m") as disk:
        out = disk / "inbox"
        with listening(tiny_bundle, out, "--min-free-mb", str(min_free_mb)) as (port, proc):
            statuses = [_send(port, _dataset()) for _ in range(12)]
            stored = [p for p in out.iterdir() if (p / "ecg.dcm").exists()]
            _wait(lambda: min_free_mb == 0 or all((p / "report.hl7").exists() for p in stored), "the reports", 60)
        lines = _stderr_lines(proc)
        folders = list(out.iterdir())
        assert statuses.count(0) == len(stored) and statuses.count(0xA700) == 12 - len(stored) > 0, statuses
        assert all((p / "ecg.dcm").exists() for p in folders), "a refused ECG left a folder"
        assert not any("Traceback" in line for line in lines), lines
        if min_free_mb:
            assert all(all((p / f).exists() for f in REPORTS) for p in stored)
            assert any("MiB are kept free for reports (--min-free-mb)" in line for line in lines), lines
        else:
            assert any("failed: No space left on device under" in line and "it stays there for the next start"
                       in line for line in lines), lines


# --- deliveries on the interpreting thread: an EMR that was down held every next ECG ~30 s, and a delivery that
# failed its tries waited for the next start ---
def test_an_emr_that_is_down_delays_no_interpretation_and_gets_its_messages_once_up(tiny_bundle, tmp_path):
    from clirun import free_port

    out, hl7_port, received = tmp_path / "inbox", free_port(), []
    sets = [_dataset() for _ in range(2)]
    with listening(tiny_bundle, out, "--hl7", f"127.0.0.1:{hl7_port}", "--retries", "2", "--backoff", "0.5") \
            as (port, proc):
        t0 = time.monotonic()
        assert [_send(port, ds) for ds in sets] == [0, 0]
        for ds in sets:                                              # reported while nothing takes the HL7
            _wait(lambda: all((out / ds.SOPInstanceUID / f).exists() for f in REPORTS), "the reports", 60)
        assert time.monotonic() - t0 < 30
        assert not any((out / ds.SOPInstanceUID / "hl7.sent").exists() for ds in sets)
        time.sleep(3)                                                # both tries (0.5 s apart) spent: "again in 2 s"
        emr = socket.create_server(("127.0.0.1", hl7_port))        # the interface engine comes back
        threading.Thread(target=ack_all, args=(emr, received), daemon=True).start()
        try:
            for ds in sets:                                          # tried again while the listener runs
                _wait(lambda: (out / ds.SOPInstanceUID / "hl7.sent").exists(), "the HL7 once the EMR is up", 30)
        finally:
            emr.close()
    assert len(received) == 2
    lines = _stderr_lines(proc)
    summary = [m for line in lines if (m := re.search(r"HL7: delivered (\d+), failed tries (\d+)$", line))]
    assert summary and int(summary[0][1]) == 2 and int(summary[0][2]) >= 2, lines[-3:]   # each failed once at least
    assert any(f"HL7 of {sets[0].SOPInstanceUID} failed" in line and "trying again in 2 s" in line
               for line in lines), lines


def test_a_stop_with_the_emr_down_is_quick_and_a_restart_delivers_what_was_left(tiny_bundle, tmp_path):
    """Deliveries queued when SIGTERM comes are sent while the EMR answers; once one fails the rest are left on
    disk: the stop takes one round of tries (here 1 + 2 s), not one per ECG, and the next start sends them."""
    import signal

    from clirun import free_port

    out, hl7_port = tmp_path / "inbox", free_port()
    sets = [_dataset() for _ in range(3)]
    args = ("--hl7", f"127.0.0.1:{hl7_port}", "--retries", "3", "--backoff", "1")
    with listening(tiny_bundle, out, *args) as (port, proc):
        assert [_send(port, ds) for ds in sets] == [0, 0, 0]
        for ds in sets:
            _wait(lambda: all((out / ds.SOPInstanceUID / f).exists() for f in REPORTS), "the reports", 60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert time.monotonic() - t0 < 8, f"stopping took {time.monotonic() - t0:.0f} s"
    assert not any((out / ds.SOPInstanceUID / "hl7.sent").exists() for ds in sets)
    emr, received = socket.create_server(("127.0.0.1", hl7_port)), []
    threading.Thread(target=ack_all, args=(emr, received), daemon=True).start()
    try:
        with listening(tiny_bundle, out, *args):
            for ds in sets:
                _wait(lambda: (out / ds.SOPInstanceUID / "hl7.sent").exists(), "the HL7 after the restart", 30)
    finally:
        emr.close()
    assert len(received) == 3


@pytest.fixture(autouse=True)
def _quiet_pynetdicom():
    import logging

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
