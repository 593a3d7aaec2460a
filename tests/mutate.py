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
from mutate_binary import (
    ABSURD_U32,
    _npy_bytes,
    dicom_field,
    edf_field,
    huge_npy,
    npy_header,
    npy_values,
    scp_content,
    scp_field,
    wfdb_header,
)

ABSURD_NUMBERS = ("0", "-1", "1e308", "NaN", "inf", "-inf", "1e-300", "99999999999999", "", "abc", "4294967296")


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


def _peak_rss_mb() -> float:
    """This process's peak resident memory: /proc's VmHWM (ru_maxrss would carry the parent's peak across
    fork and exec, and a pytest parent that trained a model is far past 1 GB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        rss = _peak_rss_mb()
        print(json.dumps({"k": k, "outcome": outcome, "seconds": round(seconds, 3), "rss_mb": round(rss),
                          "stderr": stderr_size() - before, "what": what, "detail": detail}), flush=True)


if __name__ == "__main__":
    fmt_, seed_, count_, start_, workdir_, real_ = sys.argv[1:7]
    child(fmt_, int(seed_), int(count_), int(start_), Path(workdir_), Path(real_))
