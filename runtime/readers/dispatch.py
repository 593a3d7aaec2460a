"""`read_ecg`: decide a file's format by its content (magic bytes) first, then its name, and read it.

A format known by its first bytes is one more `_BY_CONTENT` entry: a test on the head of the file, its
reader, and the suffixes that claim it (a file with such a suffix but without the magic is refused,
saying what is missing). WFDB headers are text without a magic, so they are found by name (.hea, a record
name without extension, or a signal file next to its header).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import EcgReadError
from .checks import _one_line, _size
from .dicom import is_dicom, read_dicom
from .edf import is_edf, read_edf
from .aecg import is_aecg, read_aecg
from .muse import is_muse, read_muse
from .npy import is_npy, read_npy
from .philips import is_philips, read_philips
from .scp import is_scp, read_scp
from .record import EcgRecord
from .wfdb import read_wfdb

DEFAULT_MAX_BYTES = 200 * 2**20
HEAD_BYTES = 4096                     # the DICM marker at byte 128; an XML root element after its prolog


class _ContentFormat(NamedTuple):
    """A format known by its first bytes."""

    name: str                                  # for messages: "not a DICOM file (...)"
    has_magic: Callable[[bytes], bool]         # on the file's first HEAD_BYTES bytes
    read: Callable[[Path, float | None], EcgRecord]
    suffixes: tuple[str, ...]                  # names that claim the format
    magic: str                                 # what a claimant without the magic lacks


_BY_CONTENT = (
    _ContentFormat("a .npy file", is_npy, read_npy, (".npy",), "NUMPY magic"),
    _ContentFormat("a DICOM file", is_dicom, read_dicom, (".dcm", ".dicom"), "DICM marker at byte 128"),
    _ContentFormat("a Philips Sierra XML file", is_philips, read_philips, (), "<restingecgdata> root element"),
    _ContentFormat("a GE MUSE XML file", is_muse, read_muse, (), "<RestingECG> root element"),
    _ContentFormat("an HL7 aECG file", is_aecg, read_aecg, (), "<AnnotatedECG> root element"),
    _ContentFormat("an EDF/BDF file", is_edf, read_edf, (".edf", ".bdf"), "EDF version field '0' or BDF marker"),
    _ContentFormat("an SCP-ECG file", is_scp, read_scp, (".scp",), "section 0 at byte 7"),
)


def read_ecg(path, *, fs: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> EcgRecord:
    """Read a WFDB record (.hea or record path), a DICOM ECG (.dcm), a Philips Sierra, GE MUSE or HL7 aECG XML,
    an SCP-ECG record, an EDF/EDF+/BDF file or a (12, N) mV .npy (needs `fs`).

    Dispatches on the file's content (NUMPY / DICM magic, the XML root element, SCP-ECG's section 0), then
    extension. `fs` is required for .npy and must agree with the file where the file has its own rate. Raises
    EcgReadError for every bad input.
    """
    try:
        return _read(Path(path), fs, max_bytes)
    except EcgReadError:
        raise
    except Exception as exc:   # a reader library's own error: keep its message, on one line
        raise EcgReadError(path, f"could not read: {type(exc).__name__}: {_one_line(exc)}") from exc


def _read(path: Path, fs: float | None, max_bytes: int) -> EcgRecord:
    if fs is not None and not (isinstance(fs, numbers.Real) and math.isfinite(fs)):
        raise EcgReadError(path, f"fs={fs!r} is not a finite number")
    if path.is_dir():
        raise EcgReadError(path, "is a directory, not an ECG file")
    if not path.exists():
        header = Path(f"{path}.hea")
        if header.exists():        # WFDB record name given without extension
            return read_wfdb(path, header, fs, max_bytes)
        raise EcgReadError(path, "file not found")
    size = path.stat().st_size
    if size == 0:
        raise EcgReadError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise EcgReadError(path, f"file is {_size(size)}, over the {_size(max_bytes)} limit")
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    suffix = path.suffix.lower()
    for fmt in _BY_CONTENT:
        if fmt.has_magic(head):
            return fmt.read(path, fs)
    if suffix == ".hea":
        return read_wfdb(path, path, fs, max_bytes)
    for fmt in _BY_CONTENT:
        if suffix in fmt.suffixes:
            raise EcgReadError(path, f"not {fmt.name} (no {fmt.magic}; looks like {_sniff(head)})")
    if path.with_suffix(".hea").exists():   # a WFDB signal file (.dat, .xyz) next to its header
        return read_wfdb(path, path.with_suffix(".hea"), fs, max_bytes)
    raise EcgReadError(path, f"unknown ECG format ({_sniff(head)}): expected a WFDB record (.hea), "
                             "a DICOM ECG (.dcm), a Philips Sierra, GE MUSE or HL7 aECG XML, an SCP-ECG record, "
                             "an EDF/EDF+/BDF file or a .npy array")


def claimed_by_content(path: Path) -> bool:
    """Whether read_ecg decides this file's format (by its first bytes or its suffix) before it looks for a
    WFDB header beside it; an unreadable file counts as claimed (read_ecg gives the reason it cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return True
    suffix = path.suffix.lower()
    return any(fmt.has_magic(head) or suffix in fmt.suffixes for fmt in _BY_CONTENT)


def _sniff(head: bytes) -> str:
    """A short guess at what a non-ECG file is, for the error message."""
    for magic, what in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF"),
                        (b"<?xml", "XML, none of Philips Sierra, GE MUSE or HL7 aECG"), (b"PK\x03\x04", "a ZIP archive")):
        if head.startswith(magic):
            return what
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data"
