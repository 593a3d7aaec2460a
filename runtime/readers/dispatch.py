"""`read_ecg`: decide a file's format by its content (magic bytes) first, then its name, and read it.

A format known by its first bytes is one more `_BY_CONTENT` entry: a test on the head of the file, its
reader, and the suffixes that claim it (a file with such a suffix but without the magic is refused,
saying what is missing). WFDB headers are text without a magic, so they are found by name (.hea, a record
name without extension, or a signal file next to its header).
"""

from __future__ import annotations

import math
import numbers
import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import EcgReadError, one_line
from ..thread_warnings import caught_warnings
from .aecg import is_aecg, read_aecg
from .cardiosoft import is_cardiosoft, read_cardiosoft
from .checks import DEFAULT_MAX_BYTES, size_text
from .dicom import is_dicom, read_dicom
from .edf import is_edf, read_edf
from .muse import is_muse, read_muse
from .npy import is_npy, read_npy
from .philips import is_philips, read_philips
from .record import EcgRecord
from .scp import describe as describe_scp
from .scp import is_scp, read_scp
from .wfdb import read_wfdb
from .xmlread import head_text

# Library warnings go into the record's warnings, never to stderr; these are about the libraries, not the file.
_NOT_ABOUT_FILE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning)
# Contec ECG90A's own files: 7 ASCII digits and a NUL, then the recording's date "YYYY-MM-DD hh:mm:ss"
_CONTEC = re.compile(rb"^\d{7}\x00.{0,4}\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{2}:\d{2}", re.DOTALL)
_XML_ROOT = re.compile(r"<([A-Za-z_][\w.:-]*)(?![^>]*\?>)[\s>/]")
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
    _ContentFormat("a GE CardioSoft XML file", is_cardiosoft, read_cardiosoft, (), "<CardiologyXML> root element"),
    _ContentFormat("an EDF/BDF file", is_edf, read_edf, (".edf", ".bdf"), "EDF version field '0' or BDF marker"),
    _ContentFormat("an SCP-ECG file", is_scp, read_scp, (".scp",), "section 0 at byte 7"),
)


def read_ecg(path, *, fs: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> EcgRecord:
    """Read a WFDB record (.hea or record path), a DICOM ECG (.dcm), a Philips Sierra, GE MUSE, HL7 aECG or GE
    CardioSoft XML, an SCP-ECG record, an EDF/EDF+/BDF file or a (12, N) mV .npy (needs `fs`).

    Dispatches on the file's content (NUMPY / DICM magic, the XML root element in UTF-8 or UTF-16/32, SCP-ECG's
    section 0), then extension. `fs` is required for .npy and must agree with the file where the file has its own rate. Raises
    EcgReadError for every bad input.
    """
    try:
        with caught_warnings() as caught, np.errstate(all="ignore"):      # this thread's only (thread_warnings)
            record = _read(Path(path), fs, max_bytes)
    except EcgReadError:
        raise
    except Exception as exc:   # a reader library's own error: keep its message, on one line
        raise EcgReadError(path, f"could not read: {type(exc).__name__}: {one_line(exc)}") from exc
    said = [f"{_library(w)}: {one_line(w.message)}" for w in caught if not issubclass(w.category, _NOT_ABOUT_FILE)]
    said = [note for note in dict.fromkeys(said) if note not in record.warnings]
    return replace(record, warnings=record.warnings + tuple(said)) if said else record


def _library(w: warnings.WarningMessage) -> str:
    """The package that warned ("pydicom", "numpy"), from the warning's file."""
    parts = Path(w.filename).parts
    return next((parts[k + 1] for k in range(len(parts) - 1) if parts[k] == "site-packages"), w.category.__name__)


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
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):           # a pipe or a device: its size says nothing and a read may never end
        raise EcgReadError(path, "not a regular file (a pipe, socket or device), not an ECG file")
    size = st.st_size
    if size == 0:
        raise EcgReadError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise EcgReadError(path, f"file is {size_text(size)}, over the {size_text(max_bytes)} limit")
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
            raise EcgReadError(path, f"not {fmt.name} (no {fmt.magic}; it is {_sniff(head)})")
    if path.with_suffix(".hea").exists():   # a WFDB signal file (.dat, .xyz) next to its header
        return read_wfdb(path, path.with_suffix(".hea"), fs, max_bytes)
    raise EcgReadError(path, f"unknown ECG format ({_sniff(head)}): expected a WFDB record (.hea), "
                             "a DICOM ECG (.dcm), a Philips Sierra, GE MUSE, HL7 aECG or GE CardioSoft XML, an "
                             "SCP-ECG record, an EDF/EDF+/BDF file or a .npy array")


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
                        (b"PK\x03\x04", "a ZIP archive")):
        if head.startswith(magic):
            return what
    if _CONTEC.match(head):
        return ("a Contec ECG90A native recording (the cart's own binary format, limb leads only), "
                "not a 12-lead format read here")
    scp_like = describe_scp(head)
    if scp_like:
        return scp_like
    text = head_text(head).lstrip(" \t\r\n\ufeff")
    if text.startswith("<"):
        root = _XML_ROOT.search(text)
        name = f" with root element <{root.group(1)}>" if root else ""
        return f"XML{name}, none of Philips Sierra, GE MUSE, HL7 aECG or GE CardioSoft"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data"
