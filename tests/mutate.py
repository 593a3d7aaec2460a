"""A mutation corpus built from the real cart files (../shared/data/real): per format, seeded mutants that truncate,
flip bytes, write absurd header values where the format keeps them, play XML tricks (entities, deep nesting,
millions of empty elements, other encodings) and declare huge sizes; and the child process that reads them.

    python tests/mutate.py FORMAT SEED COUNT START WORKDIR REALDIR

reads mutants START..COUNT-1 of FORMAT one after the other and prints one JSON line before each read
({"k": k}) and one after it ({"k", "outcome", "seconds", "rss_mb", "stderr", "detail"}); outcome is "read",
"refused" (an EcgReadError of one line), "bad" (a read whose output is not finite or not valid JSON, or a
refusal of more than one line) or "traceback" (any other exception). tests/test_mutation_corpus.py runs one such
child per format under resource limits and watches it for hangs.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import struct
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ABSURD_NUMBERS = ("0", "-1", "1e308", "NaN", "inf", "-inf", "1e-300", "99999999999999", "", "abc", "4294967296")
ABSURD_U32 = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0, 0xFFFF, 0x10000)


# --- byte-level mutators, every format ---------------------------------------------------------------------

def truncate(rng, data: bytes) -> bytes:
    return data[:rng.randrange(max(1, len(data)))]


def flip(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def absurd_word(rng, data: bytes) -> bytes:
    out = bytearray(data)
    pos = rng.randrange(max(1, len(out) - 4))
    out[pos:pos + 4] = struct.pack("<I", rng.choice(ABSURD_U32))
    return bytes(out)


def splice(rng, data: bytes) -> bytes:
    a, b = sorted(rng.randrange(len(data)) for _ in range(2))
    return data[:a] + data[b:] if rng.random() < 0.5 else data[:b] + data[a:b] * rng.randint(2, 4) + data[b:]


BYTES = (truncate, flip, absurd_word, splice)


# --- XML ------------------------------------------------------------------------------------------------

def _xml_text(data: bytes) -> tuple[str, str]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    return data.decode("latin-1"), "latin-1"


def _xml(fn):
    def mutate(rng, data: bytes) -> bytes:
        text, codec = _xml_text(data)
        out = fn(rng, text)
        return out if isinstance(out, bytes) else out.encode(codec, errors="replace")
    mutate.__name__ = fn.__name__
    return mutate


def _after_prolog(text: str) -> int:
    """Just past the root element's opening tag."""
    start = text.index("<", text.index("?>") + 2 if text.lstrip().startswith("<?xml") else 0)
    return text.index(">", start) + 1


@_xml
def numeric_text(rng, text):
    spots = [m.span(1) for m in re.finditer(r">\s*(-?\d+(?:\.\d+)?)\s*<", text)]
    a, b = rng.choice(spots)
    return text[:a] + rng.choice(ABSURD_NUMBERS) + text[b:]


@_xml
def numeric_attribute(rng, text):
    spots = [m.span(1) for m in re.finditer(r"=\"(-?\d+(?:\.\d+)?)\"", text)]
    a, b = rng.choice(spots)
    return text[:a] + rng.choice(ABSURD_NUMBERS) + text[b:]


@_xml
def entity(rng, text):
    declaration = rng.choice([
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'])
    at = text.index("?>") + 2 if text.lstrip().startswith("<?xml") else 0
    body = text[at:]
    return text[:at] + declaration + body.replace(">", ">&d;" if "ENTITY d" in declaration else ">&x;", 2)


@_xml
def deep_nesting(rng, text):
    n = rng.choice([1000, 50_000, 300_000])
    at = _after_prolog(text)
    return text[:at] + "<a>" * n + "</a>" * n + text[at:]


@_xml
def many_elements(rng, text):
    n = rng.choice([100_000, 600_000, 10_000_000])      # 10 million: the 40 MB file of the issue
    at = _after_prolog(text)
    return text[:at] + "<e/>" * n + text[at:]


@_xml
def other_encoding(rng, text):
    body = re.sub(r'^\s*<\?xml[^>]*\?>', "", text)
    codec, bom, says = rng.choice([("utf-16-le", b"", "utf-16"), ("utf-16-be", b"\xfe\xff", "utf-16"),
                                   ("utf-16-be", b"", "utf-16"), ("utf-32-le", b"", "utf-32"),
                                   ("utf-8", b"", "utf-16"), ("utf-16-le", b"\xff\xfe", "utf-8")])
    return bom + f'<?xml version="1.0" encoding="{says}"?>{body}'.encode(codec, errors="replace")


@_xml
def break_structure(rng, text):
    tags = [m.start() for m in re.finditer(r"</", text)]
    a = rng.choice(tags)
    return text[:a] + text[a:].replace(">", "", 1) if rng.random() < 0.5 else text[:a] + text[text.index(">", a) + 1:]


@_xml
def payload(rng, text):
    """Characters changed inside the longest text (the waveform payload)."""
    spans = sorted((m.span(1) for m in re.finditer(r">([^<]{200,})<", text)), key=lambda s: s[0] - s[1])
    a, b = spans[0]
    chars = list(text[a:b])
    for _ in range(rng.randint(1, 40)):
        chars[rng.randrange(len(chars))] = rng.choice("A/+=0-,9 \n@")
    return text[:a] + "".join(chars) + text[b:]


@_xml
def philips_channels(rng, text):
    """Philips: 10^12 channels and no lead labels (the label list was built before the payload was checked)."""
    text = re.sub(r'leadlabels="[^"]*"', 'leadlabels=""', text)
    value = rng.choice(["1000000000000", "20000000", "4294967297", "-12", "0"])
    text = re.sub(r"<numberchannelsallocated>\d+<", f"<numberchannelsallocated>{value}<", text)
    return re.sub(r'numberofleads="\d+"', f'numberofleads="{value}"', text)


XML = (numeric_text, numeric_attribute, entity, deep_nesting, many_elements, other_encoding, break_structure,
       payload) + BYTES


# --- binary formats' header fields ------------------------------------------------------------------------

def _crc(data) -> int:
    import binascii
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
    import io
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
    import io

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


# --- the sources, from the real files --------------------------------------------------------------------

def sources(fmt: str, real: Path) -> list[tuple[str, bytes, dict]]:
    """(file name, its bytes, read_ecg keyword arguments) of each real file a format's mutants start from."""
    if fmt in ("philips", "muse", "aecg", "cardiosoft"):
        return [(p.name, p.read_bytes(), {}) for p in sorted((real / fmt).glob("*.xml"))]
    if fmt == "scp":
        return [(p.name, p.read_bytes(), {}) for p in sorted((real / "scp").iterdir()) if "healforce" not in p.name]
    if fmt == "dicom":
        from pydicom.data import get_testdata_file
        return [("ge_mv360.dcm", (real / "dicom" / "ge_mv360.dcm").read_bytes(), {}),
                ("waveform_ecg.dcm", Path(get_testdata_file("waveform_ecg.dcm")).read_bytes(), {})]
    from gem_runtime.readers import read_ecg
    record = read_ecg(real / "ludb" / "1.hea")                   # Schiller Cardiovit AT-101, 12 x 5000 at 500 Hz
    if fmt == "npy":
        return [("ludb1.npy", _npy_bytes(record.signal), {"fs": 500})]
    if fmt == "edf":
        import io

        import edfio
        signals = [edfio.EdfSignal(record.signal[i].astype(np.float64), 500.0, label=f"ECG {lead}",
                                   physical_dimension="mV") for i, lead in enumerate(record.leads)]
        buffer = io.BytesIO()
        edfio.Edf(signals, data_record_duration=1.0).write(buffer)
        return [("ludb1.edf", buffer.getvalue(), {})]
    if fmt == "wfdb":
        return [("1.hea", (real / "ludb" / "1.hea").read_bytes(), {"dat": (real / "ludb" / "1.dat").read_bytes()})]
    raise ValueError(f"unknown format {fmt}")


MUTATORS = {"philips": (*XML, philips_channels), "muse": XML, "aecg": XML, "cardiosoft": XML,
            "scp": (scp_field, scp_content, scp_field, scp_content, *BYTES), "dicom": (dicom_field, dicom_field, *BYTES),
            "edf": (edf_field, edf_field, *BYTES), "npy": (npy_header, npy_values, *BYTES, huge_npy),
            "wfdb": ("header", "header", "dat", "huge")}
FORMATS = tuple(MUTATORS)


def make(fmt: str, k: int, seed: int, source_list, folder: Path) -> tuple[Path, dict, str]:
    """Mutant k of `fmt`, written under `folder`: its path, read_ecg's keyword arguments, what was done."""
    rng = random.Random(f"{fmt}-{seed}-{k}")
    name, data, kwargs = source_list[k % len(source_list)]
    mutators = MUTATORS[fmt]
    mutator = mutators[(k // len(source_list)) % len(mutators)]
    kwargs = dict(kwargs)
    if fmt == "wfdb":
        header, dat = data.decode("ascii"), kwargs.pop("dat")
        if mutator == "header":
            header = wfdb_header(rng, header)
        elif mutator == "dat":
            dat = rng.choice(BYTES)(rng, dat)
        else:                                     # 190 MiB of format 16: the record is 12 x 8.3 M samples
            repeats = 190 * 2**20 // len(dat)
            header = re.sub(r"^(\S+ \d+ \S+) \d+", rf"\g<1> {repeats * len(dat) // 24}", header, count=1)
            with open(folder / "1.dat", "wb") as f:
                f.writelines(dat for _ in range(repeats))
            dat = None
        if dat is not None:
            (folder / "1.dat").write_bytes(dat)
        (folder / "1.hea").write_text(header)
        return folder / "1.hea", kwargs, f"{name}: {mutator}"
    path = folder / f"mutant{Path(name).suffix}"
    if mutator is huge_npy:
        huge_npy(rng, data, path)
        return path, kwargs, f"{name}: {mutator.__name__}"
    try:
        with warnings.catch_warnings():           # pydicom warns about the absurd values it is given
            warnings.simplefilter("ignore")
            mutated = mutator(rng, data)
    except Exception:                             # the mutator found nothing to change: flip bytes instead
        mutator, mutated = flip, flip(rng, data)
    path.write_bytes(mutated)
    return path, kwargs, f"{name}: {mutator.__name__}"


def child(fmt: str, seed: int, count: int, start: int, workdir: Path, real: Path) -> None:
    """Read mutants start..count-1, one JSON line before and after each (see the module docstring)."""
    limit = int(os.environ.get("GEM_MUTANT_ADDRESS_SPACE", "0"))
    if limit:                                     # a runaway allocation fails here instead of swapping the machine
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from gem_runtime.readers import EcgReadError, read_ecg
    warnings.simplefilter("always")               # anything a reader lets through reaches stderr and is counted
    source_list = sources(fmt, real)
    stderr_size = lambda: os.fstat(2).st_size
    for k in range(start, count):
        folder = workdir / f"{fmt}-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        path, kwargs, what = make(fmt, k, seed, source_list, folder)
        print(json.dumps({"k": k, "what": what}), flush=True)
        before, t0 = stderr_size(), time.perf_counter()
        try:
            record = read_ecg(path, **kwargs)
            outcome, detail = "read", ""
            try:
                json.dumps({"device": record.device.to_dict() if record.device else None, "fs": record.fs,
                            "warnings": list(record.warnings), "lead_issues": getattr(record, "lead_issues", {})},
                           allow_nan=False)
                if np.isinf(record.signal).any() or not np.isfinite(record.fs):
                    outcome, detail = "bad", "infinite samples or rate"
            except ValueError as exc:
                outcome, detail = "bad", f"invalid JSON: {exc}"
        except EcgReadError as exc:
            outcome, detail = ("refused", str(exc)[:300]) if "\n" not in str(exc) else ("bad", "multi-line refusal")
        except BaseException as exc:              # noqa: BLE001 (what the corpus is looking for)
            outcome, detail = "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"
        seconds = time.perf_counter() - t0
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"k": k, "outcome": outcome, "seconds": round(seconds, 3), "rss_mb": round(rss),
                          "stderr": stderr_size() - before, "what": what, "detail": detail}), flush=True)


if __name__ == "__main__":
    fmt_, seed_, count_, start_, workdir_, real_ = sys.argv[1:7]
    child(fmt_, int(seed_), int(count_), int(start_), Path(workdir_), Path(real_))
