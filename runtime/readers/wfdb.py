"""WFDB records (PhysioNet): a .hea header and its signal files.

The plain case (formats 16 and 212, one file) is parsed and decoded by `wfdb_fast`; anything else goes
through the `wfdb` package, imported only then (it pulls in pandas).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import EcgReadError, one_line
from .checks import (
    check_channels,
    check_duration,
    check_fs,
    check_fs_agrees,
    kept_note,
    kept_samples,
    plausible_gain,
    positive_number,
    size_text,
    unit_scale,
)
from .leads import finish, plan_leads
from .record import EcgRecord, patient_sex
from .wfdb_fast import WfdbHeader, can_read_fast, parse_header, read_physical

# Bytes per sample of each WFDB format; FLAC formats (508, 516, 524) are compressed and not size-checked.
_WFDB_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2,
                          "212": 1.5, "310": 4 / 3, "311": 4 / 3}
_WFDB_COMPRESSED = {"508", "516", "524"}
# a header comment naming the patient's sex: "# Sex: Female" (PhysioNet/CinC Challenge), "#<sex>: F" (LUDB)
_SEX_COMMENT = re.compile(r"^[ \t]*#[ \t]*(?:<sex>|sex)[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)


def read_wfdb(path: Path, header_path: Path, fs_arg: float | None, max_bytes: int) -> EcgRecord:
    """Check the header against its signal files, then read only the channels GEM needs."""
    record_name = str(header_path.with_suffix(""))
    text = _wfdb_header_text(path, header_path)
    fields = _wfdb_record_line(path, header_path, text)
    header = parse_header(text)                    # the plain case, without wfdb's ~6 ms pandas parse
    if header is None:
        import wfdb  # imported only when needed: it pulls in pandas

        try:
            header = wfdb.rdheader(record_name)
        except Exception as exc:
            raise EcgReadError(path, f"unreadable WFDB header {header_path.name}: {one_line(exc)}") from exc
    if getattr(header, "seg_name", None):          # a wfdb.MultiRecord
        raise EcgReadError(path, "multi-segment WFDB records are not supported")
    if not header.n_sig:
        raise EcgReadError(path, f"{header_path.name} declares no signals")
    check_channels(path, int(header.n_sig), f"{header_path.name}: number of signals")
    if len(fields) < 3:       # wfdb would silently assume 250 Hz
        if fs_arg is None:
            raise EcgReadError(path, f"{header_path.name} gives no sampling rate (WFDB would assume 250 Hz); pass fs")
        fs = float(fs_arg)
    else:
        fs = _record_line_fs(path, header_path, fields[2], float(header.fs))
        check_fs_agrees(path, fs, fs_arg)
    check_fs(path, fs)
    if len(fields) < 4 or not header.sig_len:
        raise EcgReadError(path, f"{header_path.name} gives no record length (samples per signal)")
    sig_len = int(header.sig_len)
    check_duration(path, sig_len, fs)

    plan = plan_leads(path, list(header.sig_name))
    scales = [unit_scale(path, header.sig_name[c], header.units[c]) for c in plan.channels]
    warnings = list(plan.warnings)
    warnings += _check_wfdb_files(path, header_path, header, plan.channels, sig_len, max_bytes)

    for c, scale in zip(plan.channels, scales):
        gain = float(header.adc_gain[c] or 0) if header.adc_gain is not None else 0.0
        if gain:                                   # wfdb reads a gain of 0 as 200
            plausible_gain(path, scale / gain, f"{header_path.name}: gain {gain:g} of {header.sig_name[c]}")
    channels, kept = list(plan.channels), kept_samples(sig_len, fs)   # only the samples kept are decoded
    limits = None
    if isinstance(header, WfdbHeader) and can_read_fast(header, channels):
        physical = read_physical(header, header_path.parent, channels, kept)   # (n_used, N), as wfdb.rdrecord
        rail = {"16": 32767, "212": 2047}[header.fmt[channels[0]]]           # -32768 / -2048 mean "no sample"
        limits = [tuple(sorted((d - header.baseline[c]) / header.adc_gain[c] * scale for d in (-rail, rail)))
                  for c, scale in zip(channels, scales)]
    else:
        import wfdb

        physical = wfdb.rdrecord(record_name, channels=channels, physical=True, sampto=kept).p_signal.T
    signal = physical * np.asarray(scales)[:, None]                # (n_used, N) mV
    return finish(path, signal, fs, plan, warnings + kept_note(sig_len, fs), adc_limits=limits,
                  sex=header_sex(text))


def header_sex(text: str) -> str | None:
    """The sex a header's comments state ("# Sex: Male", "#<sex>: F"); None when none does, when the value is
    not plainly male or female, or when two comments disagree. Free-form comments (MIT-BIH's "# 69 M ...") are
    not read: a letter there is not certainly the sex."""
    found = {patient_sex(value) for value in _SEX_COMMENT.findall(text)}
    return found.pop() if len(found) == 1 else None


def _wfdb_header_text(path: Path, header_path: Path) -> str:
    if header_path.stat().st_size > 2**20:
        raise EcgReadError(path, f"{header_path.name} is {size_text(header_path.stat().st_size)}: not a WFDB header")
    try:
        return header_path.read_bytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise EcgReadError(path, f"{header_path.name} is not a WFDB header (binary data at byte {exc.start})") from exc


def _record_line_fs(path: Path, header_path: Path, field: str, parsed: float) -> float:
    """The rate as the record line writes it (`fs[/counter_freq[(base_counter)]]`). wfdb's parser reads a
    rate it cannot match (a negative one, "-500") as absent, i.e. 250 Hz: that is refused here."""
    fs = positive_number(path, field.split("/")[0], f"{header_path.name}: sampling rate")
    if abs(fs - parsed) > 1e-9 * fs:     # our reading and the parser's must agree
        raise EcgReadError(path, f"{header_path.name}: sampling rate field {field!r} read as {parsed:g} Hz")
    return fs


def _wfdb_record_line(path: Path, header_path: Path, text: str) -> list[str]:
    """The header's record line split into fields (name, n_sig, fs, sig_len, ...), to see what it omits."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.split()
    raise EcgReadError(path, f"{header_path.name} is not a WFDB header (no record line)")


def _check_wfdb_files(path, header_path, header, channels, sig_len, max_bytes) -> list[str]:
    """Each signal file exists, stays in the header's folder and holds sig_len samples of its signals."""
    warnings, total = [], 0
    needed = {header.file_name[c] for c in channels}
    for file_name in dict.fromkeys(header.file_name):   # in order, once each
        in_file = [c for c, name in enumerate(header.file_name) if name == file_name]
        if file_name not in needed:
            continue
        if Path(file_name).name != file_name or file_name in ("", ".", ".."):   # wfdb's parser also refuses these
            raise EcgReadError(path, f"signal file '{file_name}' must be in the same folder as {header_path.name}")
        file_path = header_path.parent / file_name
        if not file_path.is_file():
            raise EcgReadError(path, f"signal file {file_name} not found (named in {header_path.name})")
        size = file_path.stat().st_size
        total += size
        fmts = {header.fmt[c] for c in in_file}
        if len(fmts) != 1:
            raise EcgReadError(path, f"{file_name} mixes formats {sorted(fmts)}")
        fmt = fmts.pop()
        if fmt in _WFDB_COMPRESSED:
            continue
        if fmt not in _WFDB_BYTES_PER_SAMPLE:
            raise EcgReadError(path, f"{file_name} has WFDB format {fmt!r}, not supported")
        offset = int(header.byte_offset[in_file[0]] or 0)
        frame_bytes = sum(int(header.samps_per_frame[c] or 1) for c in in_file) * _WFDB_BYTES_PER_SAMPLE[fmt]
        held = int(max(size - offset, 0) // frame_bytes)
        if size < offset + math.ceil(sig_len * frame_bytes):
            raise EcgReadError(path, f"{header_path.name} says {sig_len} samples but {file_name} holds {held} "
                                     f"({size} bytes, {len(in_file)} signals in format {fmt})")
        if held > sig_len:
            warnings.append(f"{file_name} holds {held} samples, header says {sig_len}: read the first {sig_len}")
    if total > max_bytes:
        raise EcgReadError(path, f"signal files are {size_text(total)}, over the {size_text(max_bytes)} limit")
    return warnings
