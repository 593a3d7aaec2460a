"""The record list of an archive folder: what `gem-run batch` reads, one `Record` per ECG.

Every file under IN_DIR, walked in sorted order, is one candidate record (a file `read_ecg` refuses ends in
errors.jsonl with its reason, so nothing is left out silently), except:

- a WFDB header (`.hea`) is one record with its signal files, the names its signal lines give in its own
  folder. Those are part of it, not records of their own; so is any other file `read_ecg` would read as
  that record (a name that is the header's but for its extension, such as `100.atr`, unless its content
  or extension claims another format, as `100.dcm` does);
- hidden files and folders (a name starting with "."), and OUT_DIR where it lies inside IN_DIR, are not
  walked; the summary counts the hidden ones;
- a symbolic link to a file is read as that file, under the link's own relative path; a link to a folder
  is not followed (loops, trees outside IN_DIR): it, a broken link and anything that is not a regular file
  (a FIFO, a socket) are refused with their reason, as unreadable files are.

A record's `rel` is its path (a header's, for WFDB) relative to IN_DIR with "/" separators: its result is
OUT_DIR/<rel>.json on every platform and in every run.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..readers.dispatch import claimed_by_content

MAX_HEADER_BYTES = 2**20          # as the WFDB reader: a larger ".hea" is not a header (read_ecg says so)
FOLDER_LINK = "symbolic link to a folder: not followed (pass the folder itself)"


@dataclass(frozen=True)
class Record:
    """One ECG: what read_ecg is given, and every file its input hash covers."""
    rel: str                      # relative to IN_DIR, "/"-separated
    path: Path                    # the file read_ecg reads (a WFDB header for WFDB)
    files: tuple[Path, ...]       # hashed, in order: the file itself, or a header then its signal files


@dataclass
class Walk:
    records: list[Record] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)   # (rel, reason): unreadable without reading
    hidden: int = 0                                                # hidden files and folders, not walked

    @property
    def count(self) -> int:
        return len(self.records) + len(self.refused)


def walk_records(in_dir: Path, out_dir: Path | None = None) -> Walk:
    """The records under in_dir, sorted by `rel`; out_dir is left out where it lies inside in_dir."""
    in_dir = Path(in_dir)
    skip = Path(out_dir).resolve() if out_dir is not None else None
    walk = Walk()
    for folder, dirnames, filenames in os.walk(in_dir, followlinks=False):
        here = Path(folder)
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                walk.hidden += 1
            elif (here / d).is_symlink():
                walk.refused.append((_rel(in_dir, here / d), FOLDER_LINK))
            elif skip is None or (here / d).resolve() != skip:
                kept.append(d)
        dirnames[:] = kept                          # os.walk descends into these only
        walk.hidden += sum(f.startswith(".") for f in filenames)
        files = []
        for name in sorted(f for f in filenames if not f.startswith(".")):
            problem = _not_a_file(here / name)
            if problem:
                walk.refused.append((_rel(in_dir, here / name), problem))
            else:
                files.append(name)
        walk.records += _folder_records(in_dir, here, files)
    walk.records.sort(key=lambda r: r.rel)
    walk.refused.sort()
    return walk


def _folder_records(in_dir: Path, here: Path, names: list[str]) -> list[Record]:
    """One folder's files as records: each WFDB header with the files that belong to it, then the rest."""
    present = set(names)
    headers = [n for n in names if Path(n).suffix.lower() == ".hea"]
    claimed: set[str] = set(headers)
    records = []
    for h in headers:
        signals = [s for s in _signal_file_names(here / h) if s in present and s != h]
        claimed.update(signals)
        records.append(Record(_rel(in_dir, here / h), here / h, (here / h, *(here / s for s in signals))))
    for n in names:                   # read_ecg reads `NAME.x` as the WFDB record NAME when no format claims it
        if n not in claimed and Path(n).with_suffix(".hea").name in present and not claimed_by_content(here / n):
            claimed.add(n)
    records += [Record(_rel(in_dir, here / n), here / n, (here / n,)) for n in names if n not in claimed]
    return records


def _signal_file_names(header: Path) -> list[str]:
    """The file names a header's signal lines give (first field), once each, in order; only plain names in
    the header's own folder (read_ecg refuses the others, with its reason). [] for what is not a header."""
    try:
        if header.stat().st_size > MAX_HEADER_BYTES:
            return []
        text = header.read_bytes().decode("ascii", errors="replace")
    except OSError:
        return []
    lines = [ln.split("#")[0].split() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    names = [ln[0] for ln in lines[1:]]
    return [n for n in dict.fromkeys(names) if Path(n).name == n and n not in (".", "..")]


def _not_a_file(path: Path) -> str | None:
    """Why a directory entry is not a file to read (None when it is one, through a link or not)."""
    try:
        st = path.stat()                                  # follows a link
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "vanished while the folder was walked"
    except OSError as exc:
        return f"cannot be opened: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):                         # a link to a folder (os.walk lists it as a file)
        return FOLDER_LINK
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device)"
    return None


def _rel(in_dir: Path, path: Path) -> str:
    return path.relative_to(in_dir).as_posix()
