"""SCP-ECG (EN 1064 / ISO 11073-91064; many European carts): a binary record of CRC'd sections. Parsed by
ecgdatakit (sections 0-11, Huffman, first/second differences, reference-beat subtraction); the `formats` extra.

The device's findings: section 7 (global measurements: RR, the reference beat's P onset/offset, QRS onset/offset
and T offset in ms, the P/QRS/T axes, and optionally the ventricular rate and QTc) and section 8 (its statements).
SCP-ECG stores wave boundaries, not intervals; the device's PR, QRS and QT are the differences of its own
boundaries (PR = QRS onset - P onset, QRS = QRS offset - QRS onset, QT = T offset - QRS onset).
A CRC that does not match means the record was damaged in transit or storage: the file is refused.

Before ecgdatakit decodes anything, the section table is read here and the declared sizes are checked against
the bytes present: at most 64 leads, and a Huffman-coded record (decoded bit by bit in Python: ~3 us a sample)
at most MAX_HUFFMAN_SAMPLES samples in all, each lead no more than its bytes can hold (a code is 1 bit at least).
A file with 255 leads under the default table took over 30 s and 617 MB before this check.

Welch Allyn CardioControl writes the pediatric lead set (I, II, V3R or V4R, V1, V2, V4, V6, V7) when the cart is
in pediatric mode (its section 8 says so); that is not the 12 leads GEM reads, and is refused naming it.
"""

from __future__ import annotations

import binascii
import struct
import tempfile
from pathlib import Path

from ..errors import EcgReadError
from .checks import check_channels
from .ecgdatakit_read import EcgdatakitFormat, read_with_ecgdatakit
from .record import EcgRecord

SECTION_HEADER_BYTES = 16
_ZERO_BASED = "SCP-ECG section 3 numbers samples from 0 (EN 1064 counts from 1): read as counted from 1"
MAX_HUFFMAN_SAMPLES = 1_000_000     # 12 leads x 83 s at 1 kHz; ~3 s of ecgdatakit's decoding
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


def describe(head: bytes) -> str | None:
    """What a file that is not SCP-ECG but has an SCP-like section 0 header at byte 7 is, for the message."""
    if len(head) < 32 or struct.unpack_from("<H", head, 8)[0] != 0 or is_scp(head):
        return None
    index = struct.unpack_from("<I", head, 28)[0]
    declared = struct.unpack_from("<I", head, 2)[0]
    return (f"an SCP-ECG-like file that does not follow EN 1064: its section 0 points to byte {index}, not 7, and "
            f"its record length field says {declared} bytes (a handheld recorder's own variant)")


def read_scp(path: Path, fs_arg: float | None) -> EcgRecord:
    data = path.read_bytes()
    check_declared_sizes(path, data)
    fixed = _one_based(data)
    if fixed is None:
        return read_with_ecgdatakit(path, fs_arg, SCP)
    with tempfile.TemporaryDirectory(prefix="gem-scp-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(fixed)
        return read_with_ecgdatakit(path, fs_arg, SCP, parse_path=copy,
                                    notes=[_ZERO_BASED])


def _one_based(data: bytes) -> bytes | None:
    """A copy whose section 3 counts samples from 1, when every lead there starts at sample 0 (ECG-Soft writes
    such files, with valid CRCs, "0-10000" for the 10000 samples its section 6 holds); None when the file needs
    no change. The CRCs are recomputed."""
    sections = _sections(data)
    if 3 not in sections:
        return None
    size, index = sections[3]
    start = index - 1
    body = bytearray(data[start:start + size])
    if len(body) < SECTION_HEADER_BYTES + 2:
        return None
    n_leads = body[SECTION_HEADER_BYTES]
    pos = [SECTION_HEADER_BYTES + 2 + 9 * k for k in range(n_leads)]
    if not pos or pos[-1] + 8 > len(body) or any(struct.unpack_from("<I", body, p)[0] != 0 for p in pos):
        return None
    rhythm = _body(data, sections[6]) if 6 in sections and 2 not in sections else b""
    for k, p in enumerate(pos):
        first, last = struct.unpack_from("<II", body, p)
        held = struct.unpack_from("<H", rhythm, 6 + 2 * k)[0] // 2 if len(rhythm) >= 8 + 2 * k else -1
        struct.pack_into("<II", body, p, 1, last if held == last - first else last + 1)   # 0..N-1 or 0..N
    struct.pack_into("<H", body, 0, binascii.crc_hqx(bytes(body[2:]), 0xFFFF))
    out = bytearray(data)
    out[start:start + size] = body
    struct.pack_into("<H", out, 0, binascii.crc_hqx(bytes(out[2:]), 0xFFFF))
    return bytes(out)


def check_declared_sizes(path: Path, data: bytes) -> None:
    """Lead count and samples to decode, from sections 0, 2, 3 and 6, against the bytes present."""
    sections = _sections(data)
    if 3 not in sections:
        return                                       # ecgdatakit says what is missing
    lead_def = _body(data, sections[3])
    if len(lead_def) < 2:
        return
    n_leads = lead_def[0]
    check_channels(path, n_leads, "SCP-ECG section 3 lead count")
    if len(lead_def) < 2 + 9 * n_leads:
        raise EcgReadError(path, f"SCP-ECG section 3 declares {n_leads} leads but holds {(len(lead_def) - 2) // 9}")
    counts = [struct.unpack_from("<I", lead_def, 2 + 9 * k + 4)[0] - struct.unpack_from("<I", lead_def, 2 + 9 * k)[0]
              + 1 for k in range(n_leads)]
    huffman = 2 in sections and sections[2][0] > SECTION_HEADER_BYTES
    if not huffman:
        return
    total = 0
    for sid, what in ((6, "lead"), (5, "reference beat of lead")):
        if sid not in sections:
            continue
        body = _body(data, sections[sid])
        if sid == 5:                         # ecgdatakit: reference beat length (section 4) x the beat's rate
            beat = _body(data, sections[4]) if 4 in sections else b""
            interval = struct.unpack_from("<H", body, 2)[0] if len(body) >= 4 else 0
            if len(beat) < 2 or not interval:
                continue
            per_lead = [round(struct.unpack_from("<H", beat, 0)[0] * 1000 / interval)] * n_leads
        else:
            per_lead = counts
        for k, count in enumerate(per_lead):
            size = struct.unpack_from("<H", body, 6 + 2 * k)[0] if 8 + 2 * k <= len(body) else 0
            if count > 8 * size:
                raise EcgReadError(path, f"SCP-ECG section {sid} {what} {k + 1} declares {count} samples but its "
                                         f"{size} Huffman-coded bytes hold {8 * size} at most")
        total += sum(per_lead)
    if total > MAX_HUFFMAN_SAMPLES:
        raise EcgReadError(path, f"SCP-ECG declares {total} Huffman-coded samples in {n_leads} leads: more "
                                 f"than a resting ECG holds ({MAX_HUFFMAN_SAMPLES} at most)")


def _sections(data: bytes) -> dict[int, tuple[int, int]]:
    """Section id -> (length, 1-based index) from section 0's pointers (empty when there is none to read)."""
    if len(data) < 6 + SECTION_HEADER_BYTES:
        return {}
    length = struct.unpack_from("<I", data, 10)[0]
    table = data[6 + SECTION_HEADER_BYTES:6 + min(length, len(data) - 6)]
    out = {}
    for pos in range(0, len(table) - 9, 10):
        sid, size, index = struct.unpack_from("<HII", table, pos)
        if size and index and sid not in out:
            out[sid] = (size, index)
    return out


def _body(data: bytes, section: tuple[int, int]) -> bytes:
    size, index = section
    return data[index - 1 + SECTION_HEADER_BYTES:index - 1 + size]
