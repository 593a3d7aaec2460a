"""Decode the <parsedwaveforms> payload of a Philips Sierra ECG XML document (1.03 / 1.04) into samples.

Why our own decoder: `sierraecg` (the reference Python reader) decodes XLI one sample at a time in pure
Python, which took ~130 ms of the ~135 ms `read_ecg` spent on the shared 11 s, 12-lead Philips file
(benchmarks/read_formats.md); a cart's goal is under ~50 ms per file. Here the bit unpacking, byte
unshuffle, delta recurrence and limb leads are numpy, and only the LZW loop is Python. The output is the
same as sierraecg's, sample for sample (tests/test_xli.py holds the two side by side; sierraecg is the
oracle in the `dev` extra, not a runtime dependency).

The format, as the reference readers (sierraecg, sierra-ecg-tools) read it:

| step | what |
|---|---|
| base64 | `dataencoding="Base64"`; whitespace between the lines is ignored |
| chunks | XLI: one chunk a lead: int32 LE payload size, int16 (unused), int16 LE first delta, payload |
| LZW | 10-bit codes, most significant bit first; codes 0-255 are bytes, 256-1022 are added as decoded, |
|     | none once the table is full; a code above 1022 (1023) ends the chunk; no clear code |
| unshuffle | the decoded bytes (padded to even length): the int16 deltas' high bytes, then their low bytes |
| deltas | x[0], x[1] as stored; x[i] = 2 x[i-1] - x[i-2] - e[i]; e[2] = the header's first delta, |
|        | e[i] = d[i-1] - 64 after it |
| limb leads | XLI stores leads 3-6 as residuals r3-r6 of I and II: III = II - I - r3, |
|            | aVR = -r4 - floor((I + II) / 2), aVL = floor((I - III) / 2) - r5, aVF = floor((II + III) / 2) - r6, |
|            | in int16 arithmetic |
| uncompressed | `Uncompressed`: int16 LE, lead after lead, `n_samples` each, the leads as recorded: |
|              | sierra-ecg-tools (C#) rebuilds limb leads after XLI only; sierraecg would rebuild them here |
|              | too but cannot read such a payload (its arrays are read-only) |

A file's extra chunks past the lead count are not decoded (a DXL cart may store 16 channels, 12 allocated).
Every malformed payload raises `XliError`, a `ValueError` whose message is one line.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np

CODE_BITS = 10                        # LZW code width
MAX_CODE = (1 << CODE_BITS) - 2       # 1022: the last code the table holds; 1023 ends a chunk
HEADER_BYTES = 8                      # chunk header: int32 size, int16 unused, int16 first delta
DELTA_BIAS = 64                       # e[i] = d[i-1] - 64
MAX_LEAD_SAMPLES = 1 << 22            # 4 Mi samples a lead (2.3 h at 500 Hz): past this it is a corrupt file
MAX_CHUNK_BYTES = (2 * MAX_LEAD_SAMPLES + 1) * CODE_BITS // 8 + 2    # every code gives a byte at least
LIMB_RESIDUALS = 6                    # leads 1-6: I, II, then III, aVR, aVL, aVF stored as residuals
COMPRESSIONS = ("XLI", "Uncompressed")
_ROOTS = [bytes((b,)) for b in range(256)]
_LONGEST = MAX_CODE + 2 - len(_ROOTS)          # 768: each entry is at most one byte longer than the one before


class XliError(ValueError):
    """A Sierra waveform payload that cannot be decoded; the message is one line."""


def decode_waveforms(text: str, compression: str, labels: Sequence[str], n_samples: int) -> np.ndarray:
    """The leads of a <parsedwaveforms> element: base64 `text`, `compression` "XLI" or "Uncompressed",
    one lead per label; `n_samples` a lead is used by uncompressed payloads (XLI chunks carry their length).

    Returns int16 (len(labels), N), rows in label order, as sierraecg's `read_file(...).leads[i].samples`.
    """
    if compression not in COMPRESSIONS:
        raise XliError(f"compression {compression!r} is not supported ({' or '.join(COMPRESSIONS)})")
    n_leads = len(labels)
    if n_leads == 0:
        raise XliError("no leads named")
    data = _base64(text)
    if not data:
        raise XliError("the waveform payload is empty")
    if compression == "Uncompressed":
        return _split(data, n_leads, n_samples)
    if n_leads < LIMB_RESIDUALS:
        raise XliError(f"{n_leads} leads named; XLI stores III, aVR, aVL, aVF as residuals of I and II, "
                       f"so {LIMB_RESIDUALS} leads at least")
    leads = decode_xli(data, n_leads)
    lengths = sorted({len(lead) for lead in leads})
    if len(lengths) != 1:
        raise XliError(f"XLI leads of different lengths {lengths} samples")
    signal = np.stack(leads)                       # (n_leads, N) int16
    _rebuild_limb_leads(signal)
    return signal


def decode_xli(data: bytes, n_leads: int) -> list[np.ndarray]:
    """The first `n_leads` XLI chunks of `data`, each as int16 samples (limb leads still residuals)."""
    leads, offset = [], 0
    while len(leads) < n_leads:
        where = f"XLI lead {len(leads) + 1} (byte {offset})"
        if offset >= len(data):
            raise XliError(f"the XLI payload holds {len(leads)} lead chunks, {n_leads} leads named")
        if offset + HEADER_BYTES > len(data):
            raise XliError(f"{where}: chunk header needs {HEADER_BYTES} bytes, {len(data) - offset} remain")
        size = int.from_bytes(data[offset:offset + 4], "little", signed=True)
        first = int.from_bytes(data[offset + 6:offset + 8], "little", signed=True)
        offset += HEADER_BYTES
        if not 0 <= size <= len(data) - offset:
            raise XliError(f"{where}: chunk size {size} bytes, {len(data) - offset} remain")
        if size > MAX_CHUNK_BYTES:
            raise XliError(f"{where}: chunk size {size} bytes, more than {MAX_LEAD_SAMPLES} samples take")
        decoded = lzw_decode(data[offset:offset + size], 2 * MAX_LEAD_SAMPLES, where)
        offset += size
        leads.append(_undelta(_unshuffle(decoded), first, where))
    return leads


def lzw_decode(data: bytes, max_bytes: int, where: str = "LZW") -> bytes:
    """LZW with CODE_BITS-bit codes and no clear code: every code after the first adds an entry (the previous
    string + the first byte of this one) until the table holds codes 0..MAX_CODE; a code past it ends."""
    codes = _codes(data)                           # (n_codes,) uint16
    grow = MAX_CODE + 1 - len(_ROOTS)              # the codes after the first that fill the table
    head = codes[:grow + 1].tolist()
    if not head or head[0] > MAX_CODE:
        return b""
    if head[0] >= len(_ROOTS):
        raise XliError(f"{where}: the first LZW code is {head[0]}, not a byte (0-255)")
    table = list(_ROOTS)
    prev = table[head[0]]
    out = [prev]
    add, emit = table.append, out.append
    for k, code in enumerate(head[1:], 1):
        if code < len(table):
            entry = table[code]
        elif code == len(table):                   # the entry this very code defines
            entry = prev + prev[:1]
        elif code > MAX_CODE:
            return b"".join(out)
        else:
            raise XliError(f"{where}: LZW code {code} (code {k}) is past the table's {len(table)} entries")
        add(prev + entry[:1])
        emit(entry)
        prev = entry
    rest = codes[grow + 1:]                        # the table is full: every code up to MAX_CODE is in it
    ends = np.flatnonzero(rest > MAX_CODE)
    rest = rest[:ends[0]] if ends.size else rest
    size = sum(map(len, out))
    if size + len(rest) * _LONGEST > max_bytes:   # the bound is cheap; count only when it is passed
        size += int(np.fromiter(map(len, table), np.int64, len(table))[rest].sum())
        if size > max_bytes:
            raise XliError(f"{where}: the LZW data decodes to {size} bytes, more than {max_bytes} (a corrupt chunk)")
    out.extend(map(table.__getitem__, rest.tolist()))
    return b"".join(out)


def _codes(data: bytes) -> np.ndarray:
    """The 10-bit codes packed in `data`, most significant bit first (5 bytes hold 4); leftover bits are
    padding."""
    n_codes = len(data) * 8 // CODE_BITS
    b = np.frombuffer(data + bytes(-len(data) % 5), np.uint8).reshape(-1, 5).astype(np.uint16)   # (groups, 5)
    codes = np.empty((len(b), 4), np.uint16)
    codes[:, 0] = (b[:, 0] << 2) | (b[:, 1] >> 6)
    codes[:, 1] = ((b[:, 1] & 0x3F) << 4) | (b[:, 2] >> 4)
    codes[:, 2] = ((b[:, 2] & 0x0F) << 6) | (b[:, 3] >> 2)
    codes[:, 3] = ((b[:, 3] & 0x03) << 8) | b[:, 4]
    return codes.reshape(-1)[:n_codes]


def _unshuffle(decoded: bytes) -> np.ndarray:
    """High bytes first, then low bytes -> int16 deltas (an odd length gets a 0 low byte)."""
    b = np.frombuffer(decoded + b"\0" * (len(decoded) % 2), np.uint8)
    half = len(b) // 2
    return ((b[:half].astype(np.uint16) << 8) | b[half:]).view(np.int16)


def _undelta(d: np.ndarray, first: int, where: str) -> np.ndarray:
    """x[i] = 2 x[i-1] - x[i-2] - e[i] as two cumulative sums in int64; every x must fit int16."""
    if len(d) < 2:
        raise XliError(f"{where}: chunk decodes to {len(d)} samples, 2 at least")
    if len(d) == 2:
        return d.copy()
    d64 = d.astype(np.int64)
    e = np.empty(len(d) - 2, np.int64)             # e[i] for i = 2 .. N-1
    e[0] = first
    e[1:] = d64[2:-1] - DELTA_BIAS
    step = (d64[1] - d64[0]) - np.cumsum(e)        # x[i] - x[i-1], i >= 2
    if np.abs(step).max() > 0xFFFF:                # two int16 values are never further apart
        raise XliError(f"{where}: deltas run out of the int16 range (a corrupt chunk)")
    x = np.empty(len(d), np.int64)
    x[:2] = d64[:2]
    np.cumsum(step, out=x[2:])
    x[2:] += d64[1]
    if x.min() < -0x8000 or x.max() > 0x7FFF:
        raise XliError(f"{where}: samples run out of the int16 range (a corrupt chunk)")
    return x.astype(np.int16)


def _rebuild_limb_leads(x: np.ndarray) -> None:
    """III, aVR, aVL, aVF from I, II and their residuals, in place, in int16 arithmetic (sums wrap and halves
    round down, as sierraecg's int16 scalars and floor do)."""
    lead_i, lead_ii = x[0], x[1]                   # (N,) int16
    x[2] = lead_ii - lead_i - x[2]
    x[3] = -x[3] - ((lead_i + lead_ii) >> 1)
    x[4] = ((lead_i - x[2]) >> 1) - x[4]
    x[5] = ((lead_ii + x[2]) >> 1) - x[5]


def _split(data: bytes, n_leads: int, n_samples: int) -> np.ndarray:
    """Uncompressed: int16 LE, `n_samples` a lead, lead after lead; bytes past the named leads are unused."""
    need = 2 * n_leads * n_samples
    if n_samples <= 0:
        raise XliError(f"{n_samples} samples a lead (durationperchannel x samplingrate)")
    if len(data) < need:
        raise XliError(f"the uncompressed payload holds {len(data)} bytes; {n_leads} leads x {n_samples} "
                       f"samples need {need}")
    return np.frombuffer(data, "<i2", n_leads * n_samples).reshape(n_leads, n_samples).astype(np.int16)


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise XliError(f"the waveform payload is not base64: {exc}") from None
