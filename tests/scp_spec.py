"""SCP-ECG written from its layout (EN 1064; no real SCP-ECG file is at hand): a 6-byte preamble (CRC-CCITT,
record size), section 0 (pointers), 1 (patient and device tags), 3 (lead definitions), 6 (rhythm data, 16-bit
samples, optionally as first or second differences), 7 (global measurements of the reference beat) and 8 (the
device's statements). Every section starts with a 16-byte header (CRC, id, length, version, protocol, reserved)
and every integer is little-endian."""
import binascii
import struct

import numpy as np

from gem_runtime.constants import LEADS

LEAD_CODES = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
              "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}
# section 7's reference beat, in ms from its start: PR 164, QRS 132, QT 412 (about what PTB s0010_re measures)
BOUNDARIES = {"p_onset": 100, "p_offset": 212, "qrs_onset": 264, "qrs_offset": 396, "t_offset": 676}
AXES = (58, -95, -68)                   # P, QRS, T, degrees
RR_MS, VENT_RATE, QTC_BAZETT = 732, 82, 481
STATEMENTS = ("Sinus rhythm", "Inferior infarct, age undetermined")
UNDEFINED = 29999


def crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)          # CRC-CCITT, polynomial 0x1021, initial 0xFFFF


def section(sid: int, body: bytes, version: int = 20) -> bytes:
    body += b"\x00" * (len(body) % 2)               # sections hold an even number of bytes
    rest = struct.pack("<HIBB6s", sid, SECTION_HEADER + len(body), version, version, b"SCPECG") + body
    return struct.pack("<H", crc(rest)) + rest


SECTION_HEADER = 16


def tag(number: int, value: bytes) -> bytes:
    return struct.pack("<BH", number, len(value)) + value


def section1(model: bytes = b"EL250", manufacturer: str = "Mortara", software: str = "2.1") -> bytes:
    strings = b"\x00".join(s.encode() for s in ("VER 4.2", "SN-0042", software, "gem-edge test", manufacturer))
    machine = struct.pack("<HHHBB6sBBBBB16sB", 1, 2, 3, 0, 8, model.ljust(6, b"\x00"), 20, 0xA0, 0, 0, 1,
                          b"\x00" * 16, len("VER 4.2") + 1) + strings + b"\x00"
    tags = tag(2, b"PTB-s0010\x00") + tag(14, machine) + tag(25, struct.pack("<HBB", 2026, 12, 2))
    return tags + tag(26, bytes((9, 30, 0))) + tag(255, b"")


def section3(n_samples: int, leads=LEADS) -> bytes:
    body = struct.pack("<BB", len(leads), 0x04)     # all leads recorded simultaneously
    for lead in leads:
        body += struct.pack("<IIB", 1, n_samples, LEAD_CODES[lead])
    return body


def differences(counts: np.ndarray, mode: int) -> np.ndarray:
    """Section 6 stores amplitudes (0), first (1) or second (2) differences; the first one or two as they are."""
    if mode == 0:
        return counts
    out = counts.copy()
    if mode == 1:
        out[1:] = np.diff(counts)
    else:
        out[2:] = counts[2:] - 2 * counts[1:-1] + counts[:-2]
        out[1] = counts[1]
    return out


def section6(counts: np.ndarray, fs: float, nv_per_count: int, mode: int = 0, sizes=None) -> bytes:
    data = [differences(c.astype(np.int64), mode).astype("<i2").tobytes() for c in counts]
    sizes = [len(d) for d in data] if sizes is None else sizes
    header = struct.pack("<HHBB", nv_per_count, round(1e6 / fs), mode, 0) + struct.pack(f"<{len(sizes)}H", *sizes)
    return header + b"".join(data)


def section7(boundaries=BOUNDARIES, axes=AXES, rr=RR_MS, vent_rate=VENT_RATE, qtc=QTC_BAZETT) -> bytes:
    body = struct.pack("<BBHH", 1, 0, rr, UNDEFINED)
    body += struct.pack("<5H3h", *(boundaries[k] for k in ("p_onset", "p_offset", "qrs_onset", "qrs_offset",
                                                            "t_offset")), *axes)
    body += struct.pack("<H", 0)                                   # no QRS type list
    return body + struct.pack("<HHHB", vent_rate, UNDEFINED, qtc, 1)   # QTc formula 1: Bazett


def section8(statements=STATEMENTS) -> bytes:
    body = struct.pack("<B HBB BBB B", 0, 2026, 12, 2, 9, 30, 0, len(statements))
    for i, text in enumerate(statements, 1):
        value = text.encode("latin-1") + b"\x00"
        body += struct.pack("<BH", i, len(value)) + value
    return body


def record(sections: dict[int, bytes]) -> bytes:
    """Sections 1-11 by id (section 0 is made here, pointing at each), with the preamble and CRCs."""
    ids = range(12)
    section0_len = SECTION_HEADER + 10 * len(ids)
    offset, located, parts = 6 + section0_len, {}, []
    for sid in ids[1:]:
        if sid in sections:
            located[sid] = (len(sections[sid]), offset + 1)          # 1-based byte index
            parts.append(sections[sid])
            offset += len(sections[sid])
    pointers = struct.pack("<HII", 0, section0_len, 7)
    pointers += b"".join(struct.pack("<HII", sid, *located.get(sid, (0, 0))) for sid in ids[1:])
    body = section(0, pointers) + b"".join(parts)
    rest = struct.pack("<I", 6 + len(body)) + body
    return struct.pack("<H", crc(rest)) + rest


def scp_ecg(signal_mv: np.ndarray, fs: float, nv_per_count: int = 5000, mode: int = 2, leads=LEADS,
            measurements: bool = True) -> bytes:
    """signal_mv: (12, N) in GEM lead order, quantized to nv_per_count."""
    counts = np.round(signal_mv[[LEADS.index(lead) for lead in leads]] * 1e6 / nv_per_count).astype(np.int64)
    sections = {1: section(1, section1()), 3: section(3, section3(counts.shape[1], leads)),
                6: section(6, section6(counts, fs, nv_per_count, mode))}
    if measurements:
        sections |= {7: section(7, section7()), 8: section(8, section8())}
    return record(sections)
