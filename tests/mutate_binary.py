"""Mutators for the binary formats' header fields (SCP-ECG sections, EDF header, .npy header and values, WFDB
header lines, DICOM waveform elements), for tests/mutate.py's corpus."""

from __future__ import annotations

import binascii
import io
import re
import struct
from pathlib import Path

import numpy as np

ABSURD_U32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 0xFFFF, 0x10000)


def _crc(data) -> int:
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def _scp_pointers(out) -> dict[int, tuple[int, int, int]]:
    length = struct.unpack_from("<I", out, 10)[0]
    pointers = {}
    for pos in range(22, min(6 + length, len(out) - 10), 10):
        sid, size, index = struct.unpack_from("<HII", out, pos)
        pointers[sid] = (pos, size, index)
    return pointers


def _scp_crcs(out: bytearray, pointers) -> None:
    for sid, (pos, size, index) in pointers.items():
        start = index - 1
        if size >= 2 and 0 <= start and start + size <= len(out):
            struct.pack_into("<H", out, start, _crc(out[start + 2:start + size]))
    struct.pack_into("<H", out, 0, _crc(out[2:]))


def scp_field(rng, data: bytes) -> bytes:
    """An absurd value in section 0's pointers, section 3's lead table or section 6's header; CRCs made valid
    again most of the time, so the value gets past the CRC check."""
    out = bytearray(data)
    pointers = _scp_pointers(out)
    target = rng.choice(["pointer", "leads", "range", "s6", "s6size"])
    if target == "pointer":
        pos = rng.choice(list(pointers.values()))[0]
        struct.pack_into("<I", out, pos + rng.choice([2, 6]), rng.choice(ABSURD_U32))
    elif 3 in pointers and pointers[3][2]:
        s3 = pointers[3][2] - 1 + 16
        if target == "leads":
            out[s3] = rng.choice([255, 60, 0, 13])
        elif target == "range":
            lead = rng.randrange(max(1, out[s3]))
            struct.pack_into("<I", out, s3 + 2 + 9 * lead + rng.choice([0, 4]), rng.choice(ABSURD_U32))
        elif 6 in pointers and pointers[6][2]:
            s6 = pointers[6][2] - 1 + 16
            where = rng.choice([0, 2, 4]) if target == "s6" else 6 + 2 * rng.randrange(max(1, out[s3]))
            struct.pack_into("<H", out, s6 + where, rng.choice([0, 1, 3, 0xFFFF, 0x7FFF]))
    if rng.random() < 0.8:
        _scp_crcs(out, pointers)
    return bytes(out)


def scp_content(rng, data: bytes) -> bytes:
    """Bytes changed inside the patient/device (1), measurement (7), statement (8) or per-lead measurement (10)
    sections, CRCs made valid again: the record's structure holds, what it says does not."""
    out = bytearray(data)
    pointers = _scp_pointers(out)
    present = [sid for sid in (1, 7, 8, 10) if sid in pointers and pointers[sid][2] and pointers[sid][1] > 17]
    if not present:
        raise ValueError("no content section")
    _, size, index = pointers[rng.choice(present)]
    for _ in range(rng.randint(1, 8)):
        at = index - 1 + 16 + rng.randrange(size - 16)
        if at < len(out):
            out[at] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    _scp_crcs(out, pointers)
    return bytes(out)


def edf_field(rng, data: bytes) -> bytes:
    """An absurd value in an EDF header field: records, duration, signals, or one signal's range or samples."""
    out = bytearray(data)
    ns = int(out[252:256])
    fields = [(236, 8), (244, 8), (252, 4)]
    base = 256
    for width, name in ((16, "label"), (80, "transducer"), (8, "dimension"), (8, "pmin"), (8, "pmax"), (8, "dmin"),
                        (8, "dmax"), (80, "prefilter"), (8, "samples")):
        if name in ("pmin", "pmax", "dmin", "dmax", "samples", "dimension"):
            fields.append((base + width * rng.randrange(ns), width))
        base += width * ns
    at, width = rng.choice(fields)
    out[at:at + width] = rng.choice(["99999999", "-1", "0", "1e308", "nan", "inf", "abc", "1e-300", "-99999999"]) \
        .encode().ljust(width)[:width]
    return bytes(out)


def npy_header(rng, data: bytes) -> bytes:
    header_len = struct.unpack_from("<H", data, 8)[0]
    header = data[10:10 + header_len].decode("latin-1")
    header = rng.choice([
        lambda h: re.sub(r"'shape': \([^)]*\)", rng.choice(["'shape': (12, 1000000000000)", "'shape': (12,)",
                                                            "'shape': (1000000000, 12)", "'shape': (12, 5000, 2)",
                                                            "'shape': (12, 0)", "'shape': (13, 5000)"]), h),
        lambda h: re.sub(r"'descr': '[^']*'", rng.choice(["'descr': '<f2'", "'descr': '|O'", "'descr': '<c8'",
                                                          "'descr': '>f8'", "'descr': '<U4'", "'descr': '|b1'"]), h),
        lambda h: h.replace("False", "True")])(header)
    header = header.ljust(header_len)[:header_len] if len(header) <= header_len else header
    return data[:8] + struct.pack("<H", len(header)) + header.encode("latin-1") + data[10 + header_len:]


def npy_values(rng, data: bytes) -> bytes:
    """Samples made inf, NaN, 1e38 (inf after a float32 cast) or one lead made flat."""
    header_len = struct.unpack_from("<H", data, 8)[0]
    array = np.frombuffer(data[10 + header_len:], "<f4").reshape(12, -1).copy()
    lead = rng.randrange(12)
    choice = rng.randrange(4)
    if choice == 0:
        array[lead, rng.randrange(array.shape[1])] = np.inf
    elif choice == 1:
        array[lead] = np.nan
    elif choice == 2:
        array = array.astype("<f8") * 1e37                      # finite in float64, inf in float32
    else:
        array[lead] = 0.25
    return _npy_bytes(array)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def wfdb_header(rng, text: str) -> str:
    lines = text.splitlines()
    row = rng.randrange(len(lines))
    fields = lines[row].split()
    values = ["0", "-500", "1e9", "nan", "9999", "999999999", "1e-300", "1e300", "-200", "212", "999", "8",
              "../../etc/passwd", "16x", "200(99999999)/mV", "1e-300/mV"]
    if fields:
        fields[rng.randrange(len(fields))] = rng.choice(values)
    lines[row] = " ".join(fields)
    return "\n".join(lines) + "\n"


def dicom_field(rng, data: bytes) -> bytes:
    import pydicom
    from pydicom.dataset import Dataset
    ds = pydicom.dcmread(io.BytesIO(data))
    group = ds.WaveformSequence[0]
    channel = group.ChannelDefinitionSequence[rng.randrange(len(group.ChannelDefinitionSequence))]
    choice = rng.randrange(7)
    if choice == 0:
        group.SamplingFrequency = rng.choice(["0", "-500", "1e9", "NaN", "1e-300"])
    elif choice == 1:
        group.NumberOfWaveformChannels = rng.choice([0, 65535, 200])
    elif choice == 2:
        group.NumberOfWaveformSamples = rng.choice([0, 2**31 - 1, 1, 4_000_000_000])
    elif choice == 3:
        group.WaveformBitsAllocated = rng.choice([7, 12, 64, 0])
    elif choice == 4:
        channel.ChannelSensitivity = rng.choice(["0", "1e-300", "NaN", "inf", "1e300", "-1"])
    elif choice == 5:
        group.WaveformData = bytes(group.WaveformData[:rng.randrange(len(group.WaveformData))])
    else:
        note = Dataset()
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "5.10.2.1-3", "SCPECG", "RR interval"
        note.ConceptNameCodeSequence = [code]
        note.NumericValue = rng.choice(["NaN", "inf", "-inf", "1e308"])
        unit = Dataset()
        unit.CodeValue = "ms"
        note.MeasurementUnitsCodeSequence = [unit]
        ds.WaveformAnnotationSequence = [*ds.get("WaveformAnnotationSequence", []), note]
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def huge_npy(rng, data: bytes, path: Path) -> None:
    """190 MiB of float16 (the issue's case: it was widened to float in full, 3 GB), written a piece at a time so
    that making it does not count in the child's peak memory."""
    piece = np.frombuffer(data[10 + struct.unpack_from("<H", data, 8)[0]:], "<f4").reshape(12, -1).astype("<f2")
    repeats = 1600                                               # (12, 8_000_000)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": True,
                                                 "shape": (12, piece.shape[1] * repeats)})
        column_major = piece.T.tobytes()                         # fortran order: sample after sample
        f.writelines(column_major for _ in range(repeats))
