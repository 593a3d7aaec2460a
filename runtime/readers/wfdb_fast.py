"""A small WFDB reader for the common case: one header, formats 16 and 212, one sample per frame.

`wfdb.rdheader` spends ~6 ms per 12-lead header in pandas lookups and `wfdb.rdrecord` parses it again, so
reading a 10 s ECG cost ~14 ms, more than the ECG encoder. Here the header is split by hand and the
samples are decoded with numpy (~0.3 ms). Anything this parser is not sure of (multi-segment records,
other formats, skew, several samples per frame, missing fields, comments inside lines) gives None and
the caller reads the record with the `wfdb` package as before. tests/test_readers.py checks that both
give the same header fields and bit-identical physical signals, on PhysioNet files and our own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAST_FORMATS = {"16": -32768, "212": -2048}          # format -> WFDB's "invalid sample" value (read as NaN)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GAIN = re.compile(rf"^({_NUMBER})(?:\((-?\d+)\))?(?:/(\S+))?$")
_FORMAT = re.compile(r"^(\d+)(?:\+(\d+))?$")
_INT = re.compile(r"^-?\d+$")


@dataclass
class WfdbHeader:
    """The header fields the reader uses, with wfdb.Record's names (lists are per signal)."""
    record_name: str
    n_sig: int
    fs: float
    sig_len: int
    file_name: list[str]
    fmt: list[str]
    byte_offset: list[int]
    adc_gain: list[float]
    baseline: list[int]
    units: list[str]
    sig_name: list[str]
    samps_per_frame: list[int]
    seg_name = None                                  # single-segment only


def parse_header(text: str) -> WfdbHeader | None:
    """Header text -> fields, or None when it is not the plain single-segment case this module reads."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines or any("#" in ln for ln in lines):
        return None
    rec = lines[0].split()
    if len(rec) < 4 or "/" in rec[0] or not all(_INT.match(v) for v in (rec[1], rec[3])):
        return None
    if not re.fullmatch(_NUMBER, rec[2]):            # counter frequency / base counter: leave them to wfdb
        return None
    n_sig, fs, sig_len = int(rec[1]), float(rec[2]), int(rec[3])
    if n_sig < 1 or len(lines) != 1 + n_sig or fs <= 0:
        return None
    h = WfdbHeader(rec[0], n_sig, fs, sig_len, [], [], [], [], [], [], [], [])
    for line in lines[1:]:
        f = line.split(maxsplit=8)
        if len(f) < 9:
            return None
        fmt, gain = _FORMAT.match(f[1]), _GAIN.match(f[2])
        if not fmt or not gain or not all(_INT.match(v) for v in f[3:8]):
            return None
        adc_gain = float(gain.group(1)) or 200.0         # WFDB: a gain of 0 means 200
        h.file_name.append(f[0])
        h.fmt.append(fmt.group(1))
        h.byte_offset.append(int(fmt.group(2) or 0))
        h.adc_gain.append(adc_gain)
        h.baseline.append(int(gain.group(2)) if gain.group(2) is not None else int(f[4]))   # default: adc_zero
        h.units.append(gain.group(3) or "mV")
        h.sig_name.append(f[8])
        h.samps_per_frame.append(1)
    return h


def can_read_fast(h: WfdbHeader, channels: list[int]) -> bool:
    """All wanted channels in one signal file that holds only one format this module decodes."""
    files = {h.file_name[c] for c in channels}
    if len(files) != 1:
        return False
    name = files.pop()
    in_file = [c for c in range(h.n_sig) if h.file_name[c] == name]
    return len({(h.fmt[c], h.byte_offset[c]) for c in in_file}) == 1 and h.fmt[in_file[0]] in FAST_FORMATS


def read_physical(h: WfdbHeader, folder: Path, channels: list[int], n_samples: int | None = None) -> np.ndarray:
    """(len(channels), n_samples) float64 in the header's units, as wfdb.rdrecord(physical=True, sampto=n_samples)
    gives them: only the first n_samples frames (default sig_len) are read. The caller has checked (can_read_fast,
    file sizes) that the file holds sig_len frames."""
    name = h.file_name[channels[0]]
    in_file = [c for c in range(h.n_sig) if h.file_name[c] == name]
    fmt, offset, n = h.fmt[in_file[0]], h.byte_offset[in_file[0]], len(in_file)
    frames = h.sig_len if n_samples is None else min(int(n_samples), h.sig_len)
    count = frames * n
    if fmt == "16":
        digital = np.fromfile(folder / name, dtype="<i2", count=count, offset=offset).astype(np.int32)
    else:                                             # 212: two 12-bit samples in three bytes
        raw = np.fromfile(folder / name, dtype=np.uint8, count=(count * 3 + 1) // 2, offset=offset)
        raw = np.concatenate([raw, np.zeros((-len(raw)) % 3, np.uint8)]).reshape(-1, 3).astype(np.int32)
        pairs = np.stack([raw[:, 0] | ((raw[:, 1] & 0x0F) << 8), raw[:, 2] | ((raw[:, 1] & 0xF0) << 4)], axis=1)
        digital = pairs.reshape(-1)[:count]
        digital = np.where(digital >= 2048, digital - 4096, digital)
    digital = digital.reshape(frames, n)
    cols = [in_file.index(c) for c in channels]
    d = digital[:, cols].T                                               # (len(channels), frames)
    out = d.astype(np.float64)
    out[d == FAST_FORMATS[fmt]] = np.nan
    out -= np.asarray([h.baseline[c] for c in channels], np.float64)[:, None]
    out /= np.asarray([h.adc_gain[c] for c in channels], np.float64)[:, None]
    return out
