"""A DICOM Storage SCP for ECG waveforms (pynetdicom): store, then interpret, then report, losing nothing.

    listener = EcgListener(ListenerOptions(out=Path("inbox"), port=11112), interpreter)
    listener.start()            # C-ECHO and C-STORE of the ECG waveform SOP classes; other classes are refused

Each received object is read and checked for everything its reports need (an unreadable or non-ECG object, or
one an SR could not reference, gets a failure status and one log line), written to OUT/<SOPInstanceUID>/ecg.dcm
and fsync'ed before the success response: what is acknowledged can be reported. One worker thread interprets
the stored ECGs in order on the one warm model and writes, beside each: result.json (as `gem-run --json`),
report.sr.dcm (a Comprehensive SR) and report.hl7 (an ORU^R01), each atomically; with a forward address the SR
is sent on by C-STORE, with an HL7 address the ORU over MLLP, each destination on its own thread (delivery.py: one
that is down delays neither the interpretations nor the other), retried with back-off, tried again later when
the tries fail, and marked done only when acknowledged. A listener started on a folder picks up whatever a
previous one stored but did not finish.

An instance sent again with other content (a corrected patient) replaces the stored one and its reports are
made again; the same bytes again change nothing. Associations are refused, with one log line (calling AE, address,
reason), for a calling AE title not allowed, a called AE title that is not ours, or past `max_associations`; one is
aborted, with one log line, when a message passes `max_bytes` or `message_timeout_s` while it arrives (receipt.py);
a connection is shut past `max_associations_per_host` from one host, when it stalls inside a PDU, or when a PDU's
header declares more than the listener reads (connections.py).
An ECG that would leave less than `min_free_mb` free under `out` is refused (0xA700) before anything of it is
written. Patient data is written 0600 in 0700 folders, and every log line is one line whatever a dataset holds.
"""
from __future__ import annotations

import dataclasses
import filecmp
import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from functools import partial
from pathlib import Path

from pydicom import dcmread
from pynetdicom import evt
from pynetdicom.sop_class import Verification

from ..audit import AuditLog, file_sha256, interpretation_entry
from ..errors import EcgReadError, one_line
from ..files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, atomic_write, fsync_folder, is_disk_full
from ..interpreter import Interpreter
from ..readers import EcgRecord, read_ecg
from .connections import STALL_SLACK_S, StallWatch, counting_ae, holds_peer, host_limited_server
from .delivery import Deliveries, Superseded, send_sr
from .options import ListenerOptions, ListenerStats
from .receipt import ReceiptGuard

log = logging.getLogger("gem_runtime.hospital")

# The ECG waveform storage SOP classes (PS3.4 B.5): 12-lead, General, Ambulatory
ECG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
                   "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
                   "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage"}
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]   # explicit/implicit LE, BE
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SUCCESS, CANNOT_UNDERSTAND, NOT_MY_CLASS, OUT_OF_RESOURCES = 0x0000, 0xC000, 0xA900, 0xA700
REDELIVER_MAX_S = 300.0       # a delivery that failed its tries is tried again after at most this
ACSE_TIMEOUT_S = 10.0         # seconds for a connection's A-ASSOCIATE-RQ (pynetdicom's default 30); at most the
                              # message timeout
DOES_NOT_MATCH_CLASS = NOT_MY_CLASS           # 0xA900: "data set does not match SOP class" (a type 1 element missing)
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
ECG_FILE, RESULT_FILE, SR_FILE, HL7_FILE = "ecg.dcm", "result.json", "report.sr.dcm", "report.hl7"
FORWARDED, HL7_SENT = "sr.forwarded", "hl7.sent"        # markers: written once the peer acknowledged
REPORT_FILES = (RESULT_FILE, SR_FILE, HL7_FILE, FORWARDED, HL7_SENT)      # removed when the ECG is replaced


class EcgListener:
    def __init__(self, options: ListenerOptions, interpreter: Interpreter):
        self.options, self.interpreter = options, interpreter
        self.stats = ListenerStats()
        # (uid, received, the ECG as read, which file it was, the caller): None for what a previous listener left
        self._work: queue.Queue[tuple[str, float, EcgRecord | None, tuple | None, str] | None] = queue.Queue()
        self.audit = None if options.audit_log is None else AuditLog(options.audit_log)
        self._server = None
        # a connection that completes no PDU for this long, while we are not working on its request, is shut
        self._stalls = StallWatch(options.message_timeout_s + STALL_SLACK_S, _warn)
        self._worker = threading.Thread(target=self._interpret_loop, name="gem-interpret", daemon=True)
        # each destination on its own thread (delivery.py); a delivery that fails its tries is tried again after
        # the back-off the tries would take next
        again_s = min(options.backoff_s * 2 ** options.retries, REDELIVER_MAX_S)
        self._forwards = None if options.forward is None else \
            Deliveries("forwarding", partial(self._deliver, FORWARDED, self._send_sr), again_s)
        self._hl7s = None if options.hl7 is None else \
            Deliveries("HL7", partial(self._deliver, HL7_SENT, self._send_hl7), again_s)
        self._files = threading.Lock()            # an ECG replaced vs. its reports written (see _write)
        options.out.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)

    # --- running ---
    def start(self) -> None:
        """Pick up what a previous listener left, then answer associations (non-blocking)."""
        for uid in self.unfinished():
            self._work.put((uid, time.monotonic(), None, None, "ae:unknown (stored before a restart)"))
        self._worker.start()
        for deliveries in self._deliveries:
            deliveries.start()
        ae = counting_ae(self.options.ae_title)
        ae.add_supported_context(Verification)
        for uid in ECG_SOP_CLASSES:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        if self.options.allow_ae:
            ae.require_calling_aet = list(self.options.allow_ae)
        ae.require_called_aet = True
        ae.maximum_associations = self.options.max_associations
        ae.network_timeout = self.options.message_timeout_s       # an idle association, closed by pynetdicom
        # its A-ASSOCIATE-RQ, which a sender sends as it connects: a connection shut before it (connections.py)
        # holds its association thread, and a slot, until this passes
        ae.acse_timeout = min(ACSE_TIMEOUT_S, self.options.message_timeout_s)
        receipt = ReceiptGuard(self.options.max_bytes, self.options.message_timeout_s, self._abort)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
                    (evt.EVT_REJECTED, self._on_rejected), (evt.EVT_DATA_RECV, receipt.on_data),
                    *self._stalls.handlers(evt)]
        self._stalls.start()
        self._server = ae.make_server((self.options.host, self.options.port), evt_handlers=handlers,
                                      server_class=host_limited_server(self.options.max_associations_per_host, _warn,
                                                                       self.options.max_bytes))
        threading.Thread(target=self._server.serve_forever, name="gem-dicom-server", daemon=True).start()

    @property
    def _deliveries(self) -> list[Deliveries]:
        return [d for d in (self._forwards, self._hl7s) if d is not None]

    @property
    def alive(self) -> bool:
        """Whether the interpreting and delivering threads still run (what the systemd watchdog is fed on)."""
        return self._worker.is_alive() and all(d.alive for d in self._deliveries)

    @property
    def deliveries(self) -> dict[str, tuple[int, int]]:
        """{destination: (delivered, failed tries)} so far."""
        return {d.name: (d.delivered, d.failed) for d in self._deliveries}

    def stop(self) -> None:
        """Stop accepting, then finish every stored ECG already queued."""
        if self._server is not None:
            self._server.shutdown()
        self._stalls.stop()
        self._work.put(None)
        if self._worker.is_alive():
            self._worker.join()
        for deliveries in self._deliveries:          # what is queued now; what failed stays for the next start
            deliveries.stop()
        if self.audit is not None:
            self.audit.close()

    def unfinished(self) -> list[str]:
        """Stored ECGs whose reports are not all written, or whose forwarding or HL7 is not acknowledged."""
        out = []
        for folder in sorted(p for p in self.options.out.iterdir() if p.is_dir() and _UID.match(p.name)):
            if (folder / ECG_FILE).exists() and not self._finished(folder):
                out.append(folder.name)
        return out

    def _finished(self, folder: Path) -> bool:
        done = all((folder / f).exists() for f in (RESULT_FILE, SR_FILE, HL7_FILE))
        done &= self.options.forward is None or (folder / FORWARDED).exists()
        return done and (self.options.hl7 is None or (folder / HL7_SENT).exists())

    # --- DICOM events ---
    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_rejected(self, event) -> None:
        """An association refused (by pynetdicom, on our settings): one line with the caller and the reason."""
        self.stats.rejected += 1
        log.warning("rejected association: %s", one_line(f"{_caller(event)}: {self._rejection(event)}"))

    def _abort(self, event, reason: str) -> None:
        """A message past a bound while it arrives (receipt.py): the association aborted, one line."""
        self.stats.aborted += 1
        log.warning("aborted association: %s", one_line(f"{_caller(event)}: {reason}"))
        event.assoc.abort()

    def _rejection(self, event) -> str:
        request = event.assoc.requestor.primitive
        calling, called = str(request.calling_ae_title).strip(), str(request.called_ae_title).strip()
        if self.options.allow_ae and calling not in self.options.allow_ae:
            return f"calling AE title {calling!r} is not allowed (--allow-ae)"
        if called != self.options.ae_title:
            return f"called AE title {called!r} is not ours ({self.options.ae_title})"
        busy = sum(holds_peer(a) for a in event.assoc.ae.active_associations if a is not event.assoc)
        if busy >= self.options.max_associations:
            return f"{busy} associations are open, the limit (--max-associations {self.options.max_associations})"
        return "refused in negotiation"

    def _on_store(self, event) -> int:
        with self._stalls.busy(event.assoc):               # our work, not the peer stalling
            return self._store(event)

    def _store(self, event) -> int:
        """Checked (readable, and reportable), written and fsync'ed before the success status goes back; a refusal
        is one log line."""
        received = time.monotonic()
        who = _caller(event)
        sop_class = str(event.request.AffectedSOPClassUID)
        uid = str(event.request.AffectedSOPInstanceUID)
        if sop_class not in ECG_SOP_CLASSES:
            return self._refuse(NOT_MY_CLASS, f"{who}: SOP class {sop_class} is not an ECG waveform")
        if not _UID.match(uid) or len(uid) > 64:
            return self._refuse(CANNOT_UNDERSTAND, f"{who}: SOP Instance UID {uid[:80]!r} is not a UID")
        from .sr import source_problems

        encoded = event.encoded_dataset(include_meta=True)
        if short := self._disk_short(len(encoded)):
            return self._refuse(OUT_OF_RESOURCES, f"{who}: {uid}: not stored: {short}")
        folder = self.options.out / uid
        tmp = folder / f".{ECG_FILE}.{threading.get_ident()}.tmp"
        try:
            folder.mkdir(exist_ok=True, mode=PRIVATE_DIR_MODE)
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "wb") as f:
                f.write(encoded)
                f.flush()
                os.fsync(f.fileno())
            record = read_ecg(tmp, max_bytes=self.options.max_bytes)     # an ECG we can interpret, or refused now
            problems = source_problems(dcmread(tmp, stop_before_pixels=True))    # and one we can report
            if problems:
                tmp.unlink()
                _remove_if_empty(folder)
                return self._refuse(DOES_NOT_MATCH_CLASS, f"{who}: {uid}: cannot be reported: {'; '.join(problems)}")
            changed, kept = self._keep(tmp, folder)
            record = dataclasses.replace(record, source=str(folder / ECG_FILE))    # as it is kept, not the tmp
        except EcgReadError as exc:
            tmp.unlink(missing_ok=True)
            _remove_if_empty(folder)
            return self._refuse(CANNOT_UNDERSTAND, f"{who}: {uid}: {exc.problem}")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            _remove_if_empty(folder)
            return self._refuse(OUT_OF_RESOURCES, f"{who}: {uid}: not stored: {exc}")
        self.stats.stored += 1
        log.info("%s", one_line(f"stored {uid} from {who}" + ("" if changed else " (the same bytes again)")))
        if changed or not self._finished(folder):
            self._work.put((uid, received, record, kept, _audit_caller(event)))
        return SUCCESS

    def _disk_short(self, incoming: int) -> str | None:
        """Why an ECG of `incoming` bytes may not be stored now: the disk under `out` would keep less than
        --min-free-mb free, the room the reports of what is already stored (and the next start) need. A disk that
        filled up took ECGs with a success status whose reports then could not be written."""
        free = shutil.disk_usage(self.options.out).free
        keep = self.options.min_free_mb * 2**20
        if free - incoming >= keep:
            return None
        return (f"{free / 2**20:.0f} MiB free under {self.options.out}, and {self.options.min_free_mb} MiB are kept "
                "free for reports (--min-free-mb)")

    def _keep(self, tmp: Path, folder: Path) -> tuple[bool, tuple | None]:
        """Put the received file in place as ECG_FILE, durably. An instance sent again with other content loses
        the reports of the old one first (they are made again); the same bytes again are left as they are.
        Returns (whether the kept ECG changed, which file it is now)."""
        kept = folder / ECG_FILE
        with self._files:
            if kept.exists() and filecmp.cmp(tmp, kept, shallow=False):
                tmp.unlink()
                return False, _identity(kept)
            for name in REPORT_FILES:
                (folder / name).unlink(missing_ok=True)
            os.replace(tmp, kept)
            identity = _identity(kept)
        fsync_folder(folder)
        fsync_folder(self.options.out)
        return True, identity

    def _refuse(self, status: int, line: str) -> int:
        self.stats.refused += 1
        log.warning("refused (0x%04X): %s", status, one_line(line))
        return status

    # --- interpretation and reports ---
    def _interpret_loop(self) -> None:
        while (item := self._work.get()) is not None:
            uid, received, record, stored, caller = item
            try:
                self.process(uid, record, stored, caller)
                self.stats.interpreted += 1
                self.stats.latency_ms.append((time.monotonic() - received) * 1000)
            except Superseded:
                log.info("%s was sent again while it was being reported: reporting the new one", uid)
            except Exception as exc:                              # noqa: BLE001 - logged, the next ECG goes on
                self.stats.failed += 1
                if is_disk_full(exc):                             # the machine's state, not a bug
                    log.error("%s", one_line(f"reporting {uid} failed: {exc.strerror} under {self.options.out}; "
                                             "it stays there for the next start"))
                else:
                    log.exception("interpreting %s failed; it stays in %s for the next start", uid, self.options.out)

    def process(self, uid: str, record: EcgRecord | None = None, stored: tuple | None = None,
                caller: str = "ae:unknown") -> None:
        """Reports for one stored ECG (each step skipped when already done), then its deliveries queued. `record`:
        the ECG as read when it was stored (None: read it again, as after a restart); `stored`: which file that was
        (Superseded when another has replaced it since)."""
        from .hl7 import build_oru
        from .sr import write_sr

        folder = self.options.out / uid
        ecg = _identity(folder / ECG_FILE)                        # the ECG these reports are of
        if stored is not None and stored != ecg:
            raise Superseded(uid)
        source = dcmread(folder / ECG_FILE)
        if not (folder / RESULT_FILE).exists():
            result = self._interpret(record or folder / ECG_FILE, source, caller)
            body = json.dumps({**result.to_dict(), "sop_instance_uid": uid}, indent=1).encode()
            self._write(folder, ecg, lambda: atomic_write(folder / RESULT_FILE, body, mode=PRIVATE_FILE_MODE))
        result = json.loads((folder / RESULT_FILE).read_text())
        if not (folder / SR_FILE).exists():
            self._write(folder, ecg, lambda: write_sr(result, source, folder / SR_FILE, mode=PRIVATE_FILE_MODE))
        if not (folder / HL7_FILE).exists():
            oru = build_oru(result, source).encode()
            self._write(folder, ecg, lambda: atomic_write(folder / HL7_FILE, oru, mode=PRIVATE_FILE_MODE))
        for deliveries, marker in ((self._forwards, FORWARDED), (self._hl7s, HL7_SENT)):
            if deliveries is not None and not (folder / marker).exists():
                deliveries.put(uid)

    def _deliver(self, marker: str, send, uid: str) -> None:
        """One delivery (its destination's thread): `send(folder)`, then `marker` written once it was acknowledged,
        only while the stored ECG is the one whose reports were sent."""
        folder = self.options.out / uid
        ecg = _identity(folder / ECG_FILE)
        if not (folder / marker).exists():
            send(folder)
            self._write(folder, ecg, lambda: atomic_write(folder / marker, b"", mode=PRIVATE_FILE_MODE))

    def _send_sr(self, folder: Path) -> None:
        o = self.options
        send_sr(folder / SR_FILE, o.forward.host, o.forward.port, o.forward.ae_title, o.ae_title, o.retries,
                o.backoff_s)

    def _send_hl7(self, folder: Path) -> None:
        from .hl7 import send_mllp

        o = self.options
        send_mllp(o.hl7.host, o.hl7.port, (folder / HL7_FILE).read_text(), retries=o.retries, backoff_s=o.backoff_s,
                  log=log.warning)

    def _interpret(self, ecg, source, caller: str):
        """The interpretation, with its audit line (outcome, the stored file's hash, the study UID) when kept."""
        result, error = None, None
        try:
            result = self.interpreter.interpret(ecg, max_new_tokens=self.options.max_new_tokens,
                                                revise=self.options.revise_rhythm)
            return result
        except BaseException as exc:
            error = exc
            raise
        finally:
            if self.audit is not None:
                folder_file = Path(source.filename) if getattr(source, "filename", None) else None
                self.audit.append(interpretation_entry(
                    "dicom-listen", caller, None if folder_file is None else file_sha256(folder_file),
                    self.interpreter, result, error, {"max_new_tokens": self.options.max_new_tokens,
                                                      "revise_rhythm": self.options.revise_rhythm},
                    str(source.get("StudyInstanceUID", "")) or None))

    def _write(self, folder: Path, ecg: tuple | None, write) -> None:
        """One report step's `write()`, only while the stored ECG is still the one it was made from (an instance
        sent again replaces it and removes its reports under the same lock): Superseded otherwise."""
        with self._files:
            if _identity(folder / ECG_FILE) != ecg:
                raise Superseded(folder.name)
            write()


def _identity(path: Path) -> tuple | None:
    """Which file `path` is now (a replace makes a new inode); None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _audit_caller(event) -> str:
    """`ae:<calling AE title>@<address>` for the audit trail."""
    requestor = event.assoc.requestor
    return one_line(f"ae:{str(requestor.ae_title).strip()}@{requestor.address}")


def _warn(line: str) -> None:
    log.warning("%s", one_line(line))


def _caller(event) -> str:
    """The calling AE title and address of an event's association, as one line."""
    requestor = event.assoc.requestor
    return one_line(f"{str(requestor.ae_title).strip()} {requestor.address}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
