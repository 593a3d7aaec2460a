"""SCP-ECG (EN 1064 / ISO 11073-91064; many European carts): a binary record of CRC'd sections. Parsed by
ecgdatakit (sections 0-11, Huffman, first/second differences, reference-beat subtraction); the `formats` extra.

The device's findings: section 7 (global measurements: RR, the reference beat's P onset/offset, QRS onset/offset
and T offset in ms, the P/QRS/T axes, and optionally the ventricular rate and QTc) and section 8 (its statements).
SCP-ECG stores wave boundaries, not intervals; the device's PR, QRS and QT are the differences of its own
boundaries (PR = QRS onset - P onset, QRS = QRS offset - QRS onset, QT = T offset - QRS onset).
A CRC that does not match means the record was damaged in transit or storage: the file is refused.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .ecgdatakit_read import EcgdatakitFormat, read_with_ecgdatakit
from .record import EcgRecord

SECTION_HEADER_BYTES = 16
_UNDEFINED = 29999          # SCP-ECG's "not measured" for unsigned 16-bit values
_INTERVALS = {"pr_ms": ("qrs_onset", "p_onset"), "qrs_ms": ("qrs_offset", "qrs_onset"),
              "qt_ms": ("t_offset", "qrs_onset")}


def _section7(record) -> dict[str, float]:
    boundaries = {}
    for name in ("p_onset", "p_offset", "qrs_onset", "qrs_offset", "t_offset"):
        text = record.annotations.get(f"median_{name}_ms")
        if text is not None and int(text) != _UNDEFINED:
            boundaries[name] = int(text)
    out = {}
    for key, (end, start) in _INTERVALS.items():
        if end in boundaries and start in boundaries and boundaries[end] > boundaries[start]:
            out[key] = float(boundaries[end] - boundaries[start])
    qtc = record.raw_metadata.get("qtc_ms")          # a QTc by another formula than Bazett's (ecgdatakit keeps aside)
    if qtc:
        out["qtc_ms"] = float(qtc)
    return out


SCP = EcgdatakitFormat("SCP-ECG", "scp_ecg", "SCPECGParser", extra_measurements=_section7,
                       refuse_warning="ChecksumWarning")


def is_scp(head: bytes) -> bool:
    """The record's first section is section 0 (at byte 7, 1-based), and its first pointer names itself there."""
    if len(head) < 32:
        return False
    section_id, length = struct.unpack_from("<HI", head, 8)
    pointer_id, pointer_index = struct.unpack_from("<H", head, 22)[0], struct.unpack_from("<I", head, 28)[0]
    return (section_id == 0 and pointer_id == 0 and pointer_index == 7 and length >= SECTION_HEADER_BYTES + 10
            and (length - SECTION_HEADER_BYTES) % 10 == 0)


def read_scp(path: Path, fs_arg: float | None) -> EcgRecord:
    return read_with_ecgdatakit(path, fs_arg, SCP)
