"""The audit trail: one append-only JSON line per interpretation, each chained to the one before by hash.

    log = AuditLog("/var/lib/gem-edge/audit.jsonl")          # created 0600; a bad path is one line, now
    log.append(AuditEntry(tool="serve", caller="token:cart7", input_sha256=..., bundle_id=..., outcome="ok", ...))
    count, head, _ = verify_log(path)                         # AuditError naming the first bad line

A line is `{"seq": N, "prev": <sha256 of line N-1's bytes>, ...the entry...}` (line 1's prev is GENESIS), keys
sorted, ASCII, so a line's hash is the sha256 of its bytes without the newline. An edited, removed or moved line
breaks the chain at the next line (or its seq at this one); what a chain cannot show is lines cut off the end,
so `gem-run audit verify` prints the head hash, to be kept elsewhere and compared. Writes are O_APPEND, one
write per line, fsync'ed, under an exclusive flock so that several processes may share one log.

No patient data goes in: the input is its sha256 (and the study UID where the caller has one), the output the
sha256 of the report text, an error only its class name (a message can quote a file name, which can be a
patient's).
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import GemEdgeError
from .files import PRIVATE_FILE_MODE, fsync_folder

GENESIS = "0" * 64
AUDIT_LOG_ENV = "GEM_AUDIT_LOG"
_TAIL_CHUNK = 1 << 16


class AuditError(GemEdgeError):
    """An audit log that cannot be written, or whose chain is broken (the message names the line)."""


@dataclass(frozen=True)
class AuditEntry:
    """What one interpretation leaves in the trail. Only hashes, ids and settings: never a name or a path."""

    tool: str                                  # "gem-run", "serve", "dicom-listen", "batch"
    caller: str                                # "cli:<user>", "token:<token id>", "ae:<AE title>@<ip>"
    outcome: str                               # "ok", or "error: <error class>"
    input_sha256: str | None                   # the ECG file's bytes (None: it could not be read at all)
    bundle_id: str | None = None
    signer: str | None = None                  # the key id of the bundle's checked signature; None: not checked
    llm_type: str | None = None                # "f16", "q4_k_m", ...
    encoder_precision: dict[str, str] | None = None   # {"ecg_encoder": "fp32", ...}
    settings: dict = field(default_factory=dict)      # max_new_tokens, threads, draft_len, backend, ...
    output_sha256: str | None = None           # sha256 of the report text (UTF-8)
    study_uid: str | None = None               # DICOM StudyInstanceUID, where the input has one
    time: str = ""                             # UTC, ISO 8601 with ms; set by append when empty

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def error_outcome(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}"


def interpretation_entry(tool: str, caller: str, input_sha256: str | None, gem=None, result=None,
                         error: BaseException | None = None, settings: dict | None = None,
                         study_uid: str | None = None) -> AuditEntry:
    """The entry of one interpretation (or its refusal) by `gem` (an Interpreter, or None if none was loaded):
    the one place every tool (gem-run, serve, dicom-listen, batch) turns what it did into the trail's fields."""
    loaded = {} if gem is None else {
        "bundle_id": gem.bundle.bundle_id, "signer": gem.bundle.signer, "llm_type": gem.quant,
        "encoder_precision": dict(gem.plan.encoder_precision)}
    knobs = {} if gem is None else {"threads": gem.threads, "draft_len": gem.draft_len}
    return AuditEntry(tool=tool, caller=caller, outcome="ok" if error is None else error_outcome(error),
                      input_sha256=input_sha256, study_uid=study_uid, settings={**(settings or {}), **knobs},
                      output_sha256=None if result is None else text_sha256(result.text), **loaded)


def files_sha256(paths: list[Path]) -> str | None:
    """One file's sha256; several files (a WFDB record's header and signals) hashed as the list of their names and
    hashes, sorted; None where one cannot be read."""
    from .files import sha256_file

    try:
        if len(paths) == 1:
            return sha256_file(paths[0])
        lines = sorted(f"{Path(p).name}:{sha256_file(p)}" for p in paths)
    except OSError:
        return None
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def token_id(token: str) -> str:
    """A token's id for the trail: the first 12 hex digits of its sha256 (never the token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


def file_sha256(path: Path, max_bytes: int | None = None) -> str | None:
    """The sha256 of an input file; None where it cannot be read or is larger than max_bytes (never hashed)."""
    from .files import sha256_file

    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            return None
        return sha256_file(path)
    except OSError:
        return None


def dicom_study_uid(path: Path) -> str | None:
    """The StudyInstanceUID of a DICOM file (read without its waveform), else None."""
    try:
        with open(path, "rb") as f:
            if f.read(132)[128:] != b"DICM":
                return None
        import pydicom

        uid = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]).get(
            "StudyInstanceUID")
        return str(uid) if uid else None
    except Exception:            # noqa: BLE001 - the UID is a convenience; the input's hash is the record
        return None


def cli_caller() -> str:
    """`cli:<user name>` of this process (its uid where the name is unknown)."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    """An append-only, hash-chained JSON-lines file; safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.parent.is_dir():
            raise AuditError(f"{self.path}: audit log folder {self.path.parent} does not exist")
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        except OSError as e:
            raise AuditError(f"{self.path}: audit log cannot be opened for appending ({e.strerror})") from None
        mode = os.fstat(self._fd).st_mode & 0o777
        if mode & 0o077:
            os.close(self._fd)
            raise AuditError(f"{self.path}: audit log is open to group or others (mode {mode:04o}): chmod 600 it")
        fsync_folder(self.path.parent)
        self._tail()                               # a torn last line is refused now, not at the first append

    def append(self, entry: AuditEntry) -> str:
        """Write one chained line, fsync'ed; returns its hash (the new head)."""
        if not entry.time:
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            entry = dataclasses.replace(entry, time=now)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                seq, prev = self._tail()
                line = json.dumps({"seq": seq + 1, "prev": prev, **entry.to_dict()}, sort_keys=True,
                                  separators=(",", ":"), ensure_ascii=True).encode()
                data = line + b"\n"
                end = os.lseek(self._fd, 0, os.SEEK_END)
                try:
                    while data:
                        data = data[os.write(self._fd, data):]
                    os.fsync(self._fd)
                except OSError:                    # a full disk takes part of a line: none of it stays, so the
                    os.ftruncate(self._fd, end)    # log still verifies and the next append (or start) goes on
                    raise
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return line_hash(line)

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last line; (0, GENESIS) for an empty log."""
        with open(self.path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                return 0, GENESIS
            buf, pos = b"", end
            while pos > 0 and buf.count(b"\n") < 2:
                step = min(_TAIL_CHUNK, pos)
                pos -= step
                f.seek(pos)
                buf = f.read(step) + buf
        if not buf.endswith(b"\n"):
            raise AuditError(f"{self.path}: the last line is incomplete (a crash while writing?): check it with "
                             "gem-run audit verify and move the log aside")
        line = buf[:-1].rsplit(b"\n", 1)[-1]
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{self.path}: the last line is not an audit entry: check it with gem-run audit "
                             "verify") from None
        return seq, line_hash(line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def verify_log(path: str | os.PathLike, keep_heads: bool = False) -> tuple[int, str, set[str]]:
    """(lines, head hash, every line's hash if keep_heads) of an intact log; AuditError naming the first line
    where the chain breaks."""
    path = Path(path)
    prev, n, heads = GENESIS, 0, set()
    try:
        f = open(path, "rb")
    except OSError as e:
        raise AuditError(f"{path}: cannot be read ({e.strerror})") from None
    with f:
        for n, raw in enumerate(f, 1):
            where = f"{path}: line {n}"
            if not raw.endswith(b"\n"):
                raise AuditError(f"{where}: incomplete (no newline at its end)")
            line = raw[:-1]
            try:
                d = json.loads(line)
                seq, linked = d["seq"], d["prev"]
            except (ValueError, KeyError, TypeError):
                raise AuditError(f"{where}: not an audit entry (edited?)") from None
            if seq != n:
                raise AuditError(f"{where}: seq {seq}, expected {n}: a line removed, added or moved")
            if linked != prev:
                raise AuditError(f"{where}: its prev is not the hash of line {n - 1} (line {n - 1} or this line "
                                 "edited)" if n > 1 else f"{where}: its prev is not the genesis value")
            prev = line_hash(line)
            if keep_heads:
                heads.add(prev)
    return n, prev, heads
