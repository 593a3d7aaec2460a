"""Read an ECG file (WFDB, DICOM waveform, NumPy .npy) into one checked `EcgRecord` in mV.

This is the door between an ECG cart or hospital workstation and GEM, so it checks everything that
GEM's own loader takes on trust (`wfdb.rdsamp` then NaN -> 0, see gem-spec section 4): the lead set,
units, sampling rate, length, dead leads, and the file itself. Every problem is one
`EcgReadError(path, problem)` with numbers, never a raw wfdb/pydicom/numpy traceback.

    record = read_ecg("s0010_re.hea")     # signal (12, 38400) float32 mV, fs 1000.0, leads == LEADS

A record always comes out as the 12 GEM leads in GEM order (`constants.LEADS`). Files that store only
the 8 independent leads (I, II, V1-V6) get III, aVR, aVL, aVF derived (Einthoven/Goldberger), with a
warning; extra leads (Frank vx/vy/vz, V7, ...) are dropped, with a warning.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import LEADS, MIN_ECG_SECONDS
from .errors import EcgReadError
from .wfdb_fast import WfdbHeader, can_read_fast, parse_header, read_physical

MIN_FS = 100.0          # Hz: below this QRS complexes are not resolved
MAX_FS = 20_000.0       # Hz: above this the rate is a header error, not an ECG
DEFAULT_MAX_BYTES = 200 * 2**20
PLAUSIBLE_MAX_MV = 20.0  # larger amplitudes usually mean wrong units (uV stored as mV)

INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
LIMB_FORMULAS = {       # the 4 limb leads that I and II determine (Einthoven, Goldberger)
    "III": lambda i, ii: ii - i,
    "aVR": lambda i, ii: -(i + ii) / 2,
    "aVL": lambda i, ii: i - ii / 2,
    "aVF": lambda i, ii: ii - i / 2,
}

_MV_PER_UNIT = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
                "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
                "v": 1e3, "volt": 1e3, "volts": 1e3, "nv": 1e-6, "nanovolt": 1e-6}

# Lower-cased, "lead"/"(Einthoven)"/spaces removed -> GEM name. "MLII" (a Holter lead) is absent on purpose.
_LEAD_ALIASES = {"i": "I", "ii": "II", "iii": "III", "di": "I", "dii": "II", "diii": "III",
                 "avr": "aVR", "avl": "aVL", "avf": "aVF",
                 **{f"v{k}": f"V{k}" for k in range(1, 7)}, **{f"c{k}": f"V{k}" for k in range(1, 7)}}


@dataclass(frozen=True)
class EcgRecord:
    """A checked ECG: always the 12 GEM leads in GEM order, in mV. `signal` is read-only."""

    signal: np.ndarray          # (n_leads, n_samples) float32, mV
    fs: float                   # Hz, the file's own rate (preprocess resamples to 500 Hz)
    leads: tuple[str, ...]      # GEM names, len == n_leads
    source: str                 # the path read
    warnings: tuple[str, ...] = ()

    def __post_init__(self):
        if self.signal.ndim != 2 or self.signal.shape[0] != len(self.leads):
            raise ValueError(f"signal {self.signal.shape} does not match {len(self.leads)} lead names")
        self.signal.flags.writeable = False

    @property
    def n_samples(self) -> int:
        return self.signal.shape[1]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs


def normalize_lead_name(raw: str) -> tuple[str, float] | None:
    """'Lead I (Einthoven)' -> ('I', 1.0); '-aVR' -> ('aVR', -1.0); 'MLII', 'vx' -> None."""
    name = re.sub(r"\(.*?\)", "", str(raw).strip().lower())
    name = re.sub(r"[\s_]", "", name.replace("lead", ""))
    sign = 1.0
    if name.startswith("-") or name.startswith("neg"):
        name, sign = name.lstrip("-").removeprefix("negative").removeprefix("neg"), -1.0
    gem = _LEAD_ALIASES.get(name)
    return (gem, sign) if gem else None


def mv_per_unit(unit: str | None) -> float | None:
    """Scale from a file's voltage unit to mV; None for non-voltage units. No unit means mV (WFDB default)."""
    if unit is None or not str(unit).strip():
        return 1.0
    return _MV_PER_UNIT.get(str(unit).strip().lower())


def read_ecg(path, *, fs: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> EcgRecord:
    """Read a WFDB record (.hea or record path), a DICOM ECG (.dcm) or a (12, N) mV .npy (needs `fs`).

    Dispatches on the file's content (NUMPY / DICM magic), then extension. `fs` is required for .npy and
    must agree with the file where the file has its own rate. Raises EcgReadError for every bad input.
    """
    try:
        return _read(Path(path), fs, max_bytes)
    except EcgReadError:
        raise
    except Exception as exc:   # a reader library's own error: keep its message, on one line
        raise EcgReadError(path, f"could not read: {type(exc).__name__}: {_one_line(exc)}") from exc


# --- dispatch ----------------------------------------------------------------------------------

def _read(path: Path, fs: float | None, max_bytes: int) -> EcgRecord:
    if fs is not None and not (isinstance(fs, numbers.Real) and math.isfinite(fs)):
        raise EcgReadError(path, f"fs={fs!r} is not a finite number")
    if path.is_dir():
        raise EcgReadError(path, "is a directory, not an ECG file")
    if not path.exists():
        header = Path(f"{path}.hea")
        if header.exists():        # WFDB record name given without extension
            return _read_wfdb(path, header, fs, max_bytes)
        raise EcgReadError(path, "file not found")
    size = path.stat().st_size
    if size == 0:
        raise EcgReadError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise EcgReadError(path, f"file is {_size(size)}, over the {_size(max_bytes)} limit")
    with open(path, "rb") as f:
        head = f.read(132)
    suffix = path.suffix.lower()
    if head.startswith(b"\x93NUMPY"):
        return _read_npy(path, fs)
    if head[128:132] == b"DICM":
        return _read_dicom(path, fs)
    if suffix == ".hea":
        return _read_wfdb(path, path, fs, max_bytes)
    if suffix in (".dcm", ".dicom"):
        raise EcgReadError(path, f"not a DICOM file (no DICM marker at byte 128; looks like {_sniff(head)})")
    if suffix == ".npy":
        raise EcgReadError(path, f"not a .npy file (no NUMPY magic; looks like {_sniff(head)})")
    if path.with_suffix(".hea").exists():   # a WFDB signal file (.dat, .xyz) next to its header
        return _read_wfdb(path, path.with_suffix(".hea"), fs, max_bytes)
    raise EcgReadError(path, f"unknown ECG format ({_sniff(head)}): expected a WFDB record (.hea), "
                             "a DICOM ECG (.dcm) or a .npy array")


def _sniff(head: bytes) -> str:
    """A short guess at what a non-ECG file is, for the error message."""
    for magic, what in ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF"),
                        (b"<?xml", "XML; HL7 aECG and vendor XML are not supported"), (b"PK\x03\x04", "a ZIP archive")):
        if head.startswith(magic):
            return what
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data"


# --- WFDB --------------------------------------------------------------------------------------

# Bytes per sample of each WFDB format; FLAC formats (508, 516, 524) are compressed and not size-checked.
_WFDB_BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2,
                          "212": 1.5, "310": 4 / 3, "311": 4 / 3}
_WFDB_COMPRESSED = {"508", "516", "524"}


def _read_wfdb(path: Path, header_path: Path, fs_arg: float | None, max_bytes: int) -> EcgRecord:
    """Check the header against its signal files, then read only the channels GEM needs."""
    record_name = str(header_path.with_suffix(""))
    text = _wfdb_header_text(path, header_path)
    fields = _wfdb_record_line(path, header_path, text)
    header = parse_header(text)                    # the plain case, without wfdb's ~6 ms pandas parse
    if header is None:
        import wfdb                                # imported only when needed: it pulls in pandas

        try:
            header = wfdb.rdheader(record_name)
        except Exception as exc:
            raise EcgReadError(path, f"unreadable WFDB header {header_path.name}: {_one_line(exc)}") from exc
    if getattr(header, "seg_name", None):          # a wfdb.MultiRecord
        raise EcgReadError(path, "multi-segment WFDB records are not supported")
    if not header.n_sig:
        raise EcgReadError(path, f"{header_path.name} declares no signals")
    if len(fields) < 3:       # wfdb would silently assume 250 Hz
        if fs_arg is None:
            raise EcgReadError(path, f"{header_path.name} gives no sampling rate (WFDB would assume 250 Hz); pass fs")
        fs = float(fs_arg)
    else:
        fs = float(header.fs)
        _check_fs_agrees(path, fs, fs_arg)
    _check_fs(path, fs)
    if len(fields) < 4 or not header.sig_len:
        raise EcgReadError(path, f"{header_path.name} gives no record length (samples per signal)")
    sig_len = int(header.sig_len)
    _check_duration(path, sig_len, fs)

    plan = _plan_leads(path, list(header.sig_name))
    scales = [_unit_scale(path, header.sig_name[c], header.units[c]) for c in plan.channels]
    warnings = list(plan.warnings)
    warnings += _check_wfdb_files(path, header_path, header, plan.channels, sig_len, max_bytes)

    channels = list(plan.channels)
    if isinstance(header, WfdbHeader) and can_read_fast(header, channels):
        physical = read_physical(header, header_path.parent, channels)   # (n_used, N), as wfdb.rdrecord
    else:
        import wfdb

        physical = wfdb.rdrecord(record_name, channels=channels, physical=True).p_signal.T
    signal = physical * np.asarray(scales)[:, None]                # (n_used, N) mV
    return _finish(path, signal, fs, plan, warnings)


def _wfdb_header_text(path: Path, header_path: Path) -> str:
    if header_path.stat().st_size > 2**20:
        raise EcgReadError(path, f"{header_path.name} is {_size(header_path.stat().st_size)}: not a WFDB header")
    try:
        return header_path.read_bytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise EcgReadError(path, f"{header_path.name} is not a WFDB header (binary data at byte {exc.start})") from exc


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
        raise EcgReadError(path, f"signal files are {_size(total)}, over the {_size(max_bytes)} limit")
    return warnings


# --- DICOM -------------------------------------------------------------------------------------

_DICOM_SAMPLE_TYPES = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}  # MB/AB (mu-law, A-law) are not decoded
_DICOM_GROUP_ELEMENTS = ("SamplingFrequency", "NumberOfWaveformChannels", "NumberOfWaveformSamples",
                         "WaveformBitsAllocated", "WaveformSampleInterpretation", "WaveformData",
                         "ChannelDefinitionSequence")
_DERIVED_GROUP_WORDS = ("MEDIAN", "BEAT", "DERIVED", "AVERAGE", "TEMPLATE")


def _read_dicom(path: Path, fs_arg: float | None) -> EcgRecord:
    """12-lead ECG / General ECG waveform IODs: one multiplex group, converted by pydicom, then to mV."""
    import pydicom
    from pydicom.waveforms.numpy_handler import multiplex_array

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise EcgReadError(path, f"not a readable DICOM file: {_one_line(exc)}") from exc
    groups = ds.get("WaveformSequence")
    if not groups:
        raise EcgReadError(path, f"DICOM has no waveform (Modality {ds.get('Modality', '?')}, "
                                 f"SOP class {getattr(ds.get('SOPClassUID'), 'name', '?')})")
    index = _choose_group(path, groups)
    group = groups[index]
    missing = [name for name in _DICOM_GROUP_ELEMENTS if name not in group]
    if missing:
        raise EcgReadError(path, f"waveform group {index} lacks {', '.join(missing)}")
    fs = float(group.SamplingFrequency)
    _check_fs_agrees(path, fs, fs_arg)
    _check_fs(path, fs)
    n_channels, n_samples = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    _check_duration(path, n_samples, fs)
    sample_type, bits = str(group.WaveformSampleInterpretation), int(group.WaveformBitsAllocated)
    if sample_type not in _DICOM_SAMPLE_TYPES:
        raise EcgReadError(path, f"waveform sample interpretation {sample_type} is not supported")
    expected, held = n_channels * n_samples * bits // 8, len(group.WaveformData)
    if held < expected:
        raise EcgReadError(path, f"waveform group {index} says {n_samples} samples x {n_channels} channels "
                                 f"({expected} bytes) but its data holds {held} bytes")
    channels = list(group.ChannelDefinitionSequence)
    if len(channels) != n_channels:
        raise EcgReadError(path, f"waveform group {index} says {n_channels} channels but defines {len(channels)}")

    plan = _plan_leads(path, [_dicom_channel_name(ch, k) for k, ch in enumerate(channels)])
    scales = []
    for c in plan.channels:
        if "ChannelSensitivity" not in channels[c]:
            raise EcgReadError(path, f"channel {c} ({_dicom_channel_name(channels[c], c)}) has no sensitivity: "
                                     "samples are uncalibrated")
        units = channels[c].get("ChannelSensitivityUnitsSequence")
        unit = units[0].get("CodeValue") if units else None
        if unit is None:
            raise EcgReadError(path, f"channel {c} has no sensitivity units")
        scales.append(_unit_scale(path, _dicom_channel_name(channels[c], c), unit))

    # pydicom applies raw * sensitivity * correction factor + baseline here; do not apply them again.
    physical = ds.waveform_array(index).T[list(plan.channels)]          # (n_used, N) in file units
    if "WaveformPaddingValue" in group:                                 # padded samples are missing data
        pad = int.from_bytes(group.WaveformPaddingValue, "little", signed=sample_type[0] == "S")
        raw = multiplex_array(ds, index, as_raw=True).T[list(plan.channels)]
        physical = np.where(raw == pad, np.nan, physical)
    signal = physical * np.asarray(scales)[:, None]                    # (n_used, N) mV
    return _finish(path, signal, fs, plan, list(plan.warnings))


def _dicom_channel_name(channel, k: int) -> str:
    """Channel Source code meaning ('Lead I (Einthoven)'), else Channel Label, else 'channel k'."""
    sources = channel.get("ChannelSourceSequence")
    if sources and sources[0].get("CodeMeaning"):
        return str(sources[0].CodeMeaning)
    return str(channel.get("ChannelLabel") or f"channel {k}")


def _choose_group(path: Path, groups) -> int:
    """The first group with >= 8 ECG leads at the highest rate; median-beat/derived groups never."""
    candidates = []   # (index, fs, n_ecg_leads)
    for index, group in enumerate(groups):
        label = str(group.get("MultiplexGroupLabel", "")).upper()
        if any(word in label for word in _DERIVED_GROUP_WORDS):
            continue
        names = [_dicom_channel_name(ch, k) for k, ch in enumerate(group.get("ChannelDefinitionSequence", []))]
        n_ecg = sum(normalize_lead_name(name) is not None for name in names)
        candidates.append((index, float(group.get("SamplingFrequency", 0) or 0), n_ecg))
    if not candidates:
        raise EcgReadError(path, f"DICOM holds only median-beat/derived waveforms ({len(groups)} groups)")
    full = [c for c in candidates if c[2] >= len(INDEPENDENT_LEADS)]
    if full:
        return max(full, key=lambda c: (c[1], -c[0]))[0]
    return max(candidates, key=lambda c: (c[2], -c[0]))[0]   # fails the lead-set check with a clear list


# --- NumPy -------------------------------------------------------------------------------------

def _read_npy(path: Path, fs: float | None) -> EcgRecord:
    """A (12, N) (or unambiguous (N, 12)) real array in mV, leads in GEM order; the header is checked first."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise EcgReadError(path, f".npy format version {version[0]}.{version[1]} is not supported")
        data_start = f.tell()
    if dtype.hasobject:
        raise EcgReadError(path, f"array has object dtype ({dtype}); expected real numbers")
    if dtype.kind == "c":
        raise EcgReadError(path, f"array is complex ({dtype}); expected real mV values")
    if dtype.kind not in "fiu":
        raise EcgReadError(path, f"array dtype {dtype} is not a real number type")
    if len(shape) != 2:
        raise EcgReadError(path, f"array has {len(shape)} dimensions {shape}; expected (12, N)")
    data_bytes = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - data_start
    if held < data_bytes:
        raise EcgReadError(path, f"truncated: header says {shape} {dtype} ({data_bytes} bytes) "
                                 f"but the file holds {held} bytes of data")
    if shape[0] == len(LEADS):
        transpose, warnings = False, []
    elif shape[1] == len(LEADS):
        transpose, warnings = True, [f"array was {shape} (samples, leads): transposed to (12, {shape[0]})"]
    else:
        raise EcgReadError(path, f"array shape {shape}: expected (12, N) with leads in order {', '.join(LEADS)}")
    if fs is None:
        raise EcgReadError(path, "a .npy array has no sampling rate: pass fs (Hz)")
    fs = float(fs)
    _check_fs(path, fs)
    n_samples = shape[0] if transpose else shape[1]
    _check_duration(path, n_samples, fs)

    array = np.load(path, allow_pickle=False)
    signal = (array.T if transpose else array).astype(np.float64)       # (12, N) mV
    plan = _plan_leads(path, list(LEADS))
    return _finish(path, signal, fs, plan, warnings)


# --- shared checks and lead assembly -----------------------------------------------------------

@dataclass(frozen=True)
class _LeadPlan:
    """Which file channels become which GEM leads; decided from names alone, before reading samples."""

    channels: tuple[int, ...]          # file channel indices to read, ascending
    stored: dict                       # GEM lead -> (row in the read signal, sign)
    derived: tuple[str, ...]           # GEM leads computed from I and II
    warnings: tuple[str, ...]


def _plan_leads(path: Path, names: list[str]) -> _LeadPlan:
    """Map file channel names to GEM leads; refuse a lead set that cannot give the 12 GEM leads."""
    found, extras, warnings = {}, [], []
    for channel, name in enumerate(names):
        normalized = normalize_lead_name(name)
        if normalized is None:
            extras.append(str(name))
            continue
        lead, sign = normalized
        if lead in found:
            raise EcgReadError(path, f"lead {lead} appears twice (channels {found[lead][0]} "
                                     f"'{names[found[lead][0]]}' and {channel} '{name}')")
        found[lead] = (channel, sign)
    missing = [lead for lead in INDEPENDENT_LEADS if lead not in found]
    if missing:
        have = ", ".join(map(str, names)) or "no channels"
        holter = [name for name in extras if name.strip().upper().startswith("ML")]
        note = f"; {', '.join(holter)} is a modified Holter lead, not a 12-lead one" if holter else ""
        raise EcgReadError(path, f"wrong lead set for a 12-lead ECG: missing {', '.join(missing)} "
                                 f"(file has {have}{note}; need I, II, V1-V6, the other limb leads can be derived)")
    derived = tuple(lead for lead in LEADS if lead not in found)
    if derived:
        warnings.append(f"derived {', '.join(derived)} from I and II (not stored in the file)")
    if extras:
        warnings.append(f"dropped leads {', '.join(extras)} (not in the 12-lead set)")
    inverted = [names[c] for c, sign in found.values() if sign < 0]
    if inverted:
        warnings.append(f"inverted {', '.join(inverted)} to get the standard leads")
    channels = tuple(sorted(c for c, _ in found.values()))
    stored = {lead: (channels.index(c), sign) for lead, (c, sign) in found.items()}
    return _LeadPlan(channels, stored, derived, tuple(warnings))


def _finish(path: Path, signal: np.ndarray, fs: float, plan: _LeadPlan, warnings: list[str]) -> EcgRecord:
    """Check each stored lead for signal, derive missing limb leads, return the 12 leads in GEM order."""
    # signal: (len(plan.channels), N) float mV, rows in plan.channels order
    row_leads = sorted(plan.stored, key=lambda lead: plan.stored[lead][0])   # GEM name of each signal row
    _check_leads_alive(path, signal, row_leads, fs)
    leads = {lead: signal[row] * sign for lead, (row, sign) in plan.stored.items()}
    for lead in plan.derived:
        leads[lead] = LIMB_FORMULAS[lead](leads["I"], leads["II"])
    out = np.stack([leads[lead] for lead in LEADS]).astype(np.float32)   # (12, N) mV
    with np.errstate(invalid="ignore"):
        peak = float(np.nanmax(np.abs(out)))
    if peak > PLAUSIBLE_MAX_MV:
        warnings.append(f"amplitudes reach {peak:.0f} mV (ECG is usually < 5 mV): check the units")
    return EcgRecord(out, fs, LEADS, str(path), tuple(warnings))


def _check_leads_alive(path: Path, signal: np.ndarray, lead_names: list[str], fs: float) -> None:
    """No lead may be all NaN/Inf or flat (zero variance: lead off or a blank channel)."""
    finite = np.isfinite(signal)
    for row, lead in enumerate(lead_names):
        if not finite[row].any():
            raise EcgReadError(path, f"lead {lead} is all NaN/Inf ({signal.shape[1]} samples)")
    lows = np.where(finite, signal, np.inf).min(axis=1)
    highs = np.where(finite, signal, -np.inf).max(axis=1)
    flat = [lead for lead, lo, hi in zip(lead_names, lows, highs) if lo == hi]
    seconds = signal.shape[1] / fs
    if len(flat) == len(lead_names):
        raise EcgReadError(path, f"all {len(flat)} leads are flat over {seconds:.1f} s: no signal")
    if flat:
        values = ", ".join(f"{lead} = {lows[lead_names.index(lead)]:.3g} mV" for lead in flat)
        raise EcgReadError(path, f"flat lead{'s' if len(flat) > 1 else ''} {', '.join(flat)} "
                                 f"(constant {values} over {seconds:.1f} s): lead off?")


def _check_fs(path: Path, fs: float) -> None:
    if not (math.isfinite(fs) and MIN_FS <= fs <= MAX_FS):
        raise EcgReadError(path, f"sampling rate {fs:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")


def _check_fs_agrees(path: Path, file_fs: float, fs_arg: float | None) -> None:
    if fs_arg is not None and abs(float(fs_arg) - file_fs) > 1e-6 * file_fs:
        raise EcgReadError(path, f"fs={fs_arg:g} Hz given but the file says {file_fs:g} Hz")


def _check_duration(path: Path, n_samples: int, fs: float) -> None:
    seconds = n_samples / fs
    if seconds < MIN_ECG_SECONDS:
        raise EcgReadError(path, f"record is {seconds:.2f} s ({n_samples} samples at {fs:g} Hz); "
                                 f"at least {MIN_ECG_SECONDS:g} s needed")


def _unit_scale(path: Path, channel: str, unit) -> float:
    scale = mv_per_unit(unit)
    if scale is None:
        raise EcgReadError(path, f"channel '{channel}' has units '{unit}', not a voltage (expected mV, uV or V)")
    return scale


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes} bytes"
