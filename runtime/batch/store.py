"""OUT_DIR of `gem-run batch`: one result per record, written so that a rerun can trust what it finds.

    OUT_DIR/<rel>.json     what `gem-run --json` prints, plus "batch": {"input_sha256", "bundle_id", "quant",
                           "max_new_tokens"}; written to a temporary file, fsynced, then renamed into place
    OUT_DIR/<rel>.png      with --save-images: the image the model saw (and <rel>-median-beats.png beside it)
    OUT_DIR/errors.jsonl   one {"file": rel, "error": the reader's one-line reason} per refused file, by file

A record is done when its JSON exists, parses, and its "batch" key equals this run's: same input bytes
(sha256 over the record's files), bundle, LLM type and token limit (and its image exists, with
--save-images). The JSON is written last, so it marks the whole record done.

errors.jsonl is keyed by file and rewritten atomically at the end of every run, an interrupted one too:
this run's refusals, plus the earlier entries of files this run did not reach (interrupted before them).
An entry is dropped when its file now succeeds or is no longer under IN_DIR, so a file that still fails
is listed once, however many runs. Refused files are read again on every run (reading fails before any
model work, so this is cheap). A record refused now loses the result an earlier content of it had.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import GemEdgeError
from ..files import PRIVATE_FILE_MODE, atomic_write
from .walk import Record

ERRORS_FILE = "errors.jsonl"
_CHUNK = 1 << 22


def input_sha256(files: tuple[Path, ...]) -> str:
    """sha256 over a record's files: each file's name, its bytes and their count, in order."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0")
        n = 0
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
                n += len(block)
        h.update(f"\0{n}\0".encode())
    return h.hexdigest()


def folder_error(path: Path, exc: OSError, doing: str) -> GemEdgeError:
    """An OSError on the results folder as the one line a user gets (exit 2): the folder is the problem, not us."""
    return GemEdgeError(f"{path}: cannot {doing} ({exc.strerror or exc}): the results folder must be writable")


def check_writable(out_dir: Path) -> None:
    """A file made and removed in out_dir, before any model is loaded: a read-only or full folder is one line."""
    probe = Path(out_dir) / f".gem-batch-check.{os.getpid()}"
    try:
        atomic_write(probe, b"", durable=False)
        probe.unlink()
    except OSError as exc:
        raise folder_error(Path(out_dir), exc, "write results there") from None


class ResultStore:
    """The results and refusals of one run in OUT_DIR. `settings` is the run's part of the "batch" key."""

    def __init__(self, out_dir: Path, settings: dict, images: bool = False):
        self.out_dir, self.settings, self.images = Path(out_dir), dict(settings), images
        self.earlier = read_errors(self.out_dir / ERRORS_FILE)      # rel -> reason, from earlier runs
        self.refused: dict[str, str] = {}                           # rel -> reason, this run
        self.reached: set[str] = set()                              # every rel this run decided on

    def result_path(self, rel: str) -> Path:
        return self.out_dir / f"{rel}.json"

    def image_path(self, rel: str) -> Path:
        return self.out_dir / f"{rel}.png"

    def key(self, record: Record) -> dict:
        """The record's "batch" key: its input hash and this run's settings (raises OSError if unreadable)."""
        return {"input_sha256": input_sha256(record.files), **self.settings}

    def done(self, record: Record, key: dict) -> bool:
        """True only when the record's result exists, parses, and was made from the same input and settings."""
        self.reached.add(record.rel)
        try:
            data = json.loads(self.result_path(record.rel).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (isinstance(data, dict) and data.get("batch") == key
                and (not self.images or self.image_path(record.rel).is_file()))

    def write(self, record: Record, result: dict, key: dict) -> None:
        self.reached.add(record.rel)
        path = self.result_path(record.rel)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({**result, "batch": key}), mode=PRIVATE_FILE_MODE)
        except OSError as exc:
            raise folder_error(path, exc, "write the result") from None

    def refuse(self, rel: str, reason: str) -> None:
        """A file that is not read: listed in errors.jsonl; a result of an earlier content of it is removed."""
        self.reached.add(rel)
        self.refused[rel] = reason
        for stale in (self.result_path(rel), self.image_path(rel),
                      self.out_dir / f"{rel}-median-beats.png"):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                raise folder_error(stale, exc, "remove an outdated result") from None

    def finish(self, walked: set[str]) -> dict[str, str]:
        """Rewrite errors.jsonl (see the module docstring); `walked`: every rel under IN_DIR now."""
        entries = {rel: reason for rel, reason in self.earlier.items() if rel in walked and rel not in self.reached}
        entries.update(self.refused)
        path = self.out_dir / ERRORS_FILE
        text = "".join(json.dumps({"file": rel, "error": entries[rel]}) + "\n" for rel in sorted(entries))
        try:
            if not path.is_file() or path.read_text(encoding="utf-8", errors="replace") != text:
                atomic_write(path, text, mode=PRIVATE_FILE_MODE)  # unchanged: left as it is (a rerun writes nothing)
        except OSError as exc:
            raise folder_error(path, exc, "write the list of refused files") from None
        return entries


def read_errors(path: Path) -> dict[str, str]:
    """errors.jsonl as rel -> reason; lines that do not parse are dropped (their files are read again anyway)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    entries = {}
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("error"), str):
            entries[e["file"]] = e["error"]
    return entries
