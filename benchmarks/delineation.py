"""`gem-bench delineation`: our delineation against cardiologists (LUDB) and against every cart file's own values.

    gem-bench delineation [--ludb DIR] [--real DIR] [--label NAME] [--out benchmarks/results/delineation]
                          [--md benchmarks/delineation.md] [--neurokit]

LUDB (Kalyakulina et al., IEEE Access 2020; PhysioNet 1.0.1): cardiologists marked the onset, peak and offset of
every P, QRS and T wave on each of the 12 leads separately. The reference, per beat (issue 24):
- a beat is a cluster of the leads' QRS peaks; its R is their median; its QRS marks are those of every lead whose
  QRS peak lies within 120 ms of that R; its P marks those whose P peak lies between the previous R and this one;
  its T marks those whose T peak lies between this R and the next;
- the global onset is the second earliest onset across the leads, the global offset the second latest (robust to
  one lead's stray mark); the earliest / latest are kept too. A wave marked in fewer than 2 leads is not counted;
- the record's PR, P duration, QRS and QT are the medians over its beats.

Ours: `measure_ecg` on the record as `gem-run` reads it (`read_ecg` + `preprocess_ecg`); each beat's own global
waves (`Measurements.beat_waves`, formed over the leads as the reference is).
Detection per wave type: a reference beat's wave is found (TP) when our beat within 150 ms of its R has that wave
within 150 ms of it (P and QRS: wave centre to wave centre; T: T end to T end); ours with no reference wave is a
false positive. Boundary
errors (ours - reference, ms) over the found waves.

The records are split in two halves: `tune` (record number mod 4 == 1) on which the delineator was trained and
tuned, and `held-out` (mod 4 == 3), which it was only evaluated on.

Cart files: every file under --real (except LUDB and the labelled records) and the shared vendor file, read with
`gem_runtime.readers.read_ecg`; ours against the `DeviceReport` values, per quantity, within issue 24's
tolerances. A file the readers refuse is listed as "not readable yet" with the reader's one-line reason.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FS = 500
MS = 1000.0 / FS
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
PEAK = {"p": "P", "N": "QRS", "t": "T"}
BEAT_WINDOW_MS = 120.0           # a lead's QRS peak this close to the beat's R belongs to the beat
MATCH_MS = 150.0                 # detection tolerance (QRS: ANSI/AAMI EC57's 150 ms; the same for P and T)
MIN_LEADS = 2                    # a wave marked in fewer leads is not a reference wave
INTERVALS = ("pr_ms", "p_ms", "qrs_ms", "qt_ms")
BOUNDARIES = ("p_on", "p_off", "qrs_on", "qrs_off", "t_off")
# issue 24's targets: |mean| and SD of the global intervals against the cardiologists (ms)
TARGET_MEAN = {"pr_ms": 10, "p_ms": 10, "qrs_ms": 10, "qt_ms": 15}
TARGET_SD = {"pr_ms": 15, "p_ms": 15, "qrs_ms": 10, "qt_ms": 30}
# device agreement tolerances (issue 24)
TOLERANCE = {"hr_bpm": 3, "pr_ms": 15, "qrs_ms": 15, "qt_ms": 25, "p_axis_deg": 25, "qrs_axis_deg": 15,
             "t_axis_deg": 15}
CART_DIRS = ("muse", "philips", "scp", "aecg", "dicom", "cardiosoft", "other")
NO_SIGNAL_FILES = {"129ECORG_leads_off.xml"}      # the device says "All 12 leads are missing": no numbers


def half(record: int) -> str:
    return "tune" if record % 4 == 1 else "held-out"


# --- the reference -------------------------------------------------------------------------------

@dataclass
class RefBeat:
    r: int                                          # sample
    qrs: tuple[int, int, int, int] | None = None    # (2nd earliest on, 2nd latest off, earliest on, latest off)
    p: tuple[int, int, int, int] | None = None
    t: tuple[int, int, int, int] | None = None


def read_waves(path: Path) -> dict[str, list[tuple[int, int, int]]]:
    """{"P"|"QRS"|"T": [(onset, peak, offset)]} of one lead's annotation file (onset/offset -1 where missing)."""
    import wfdb

    ann = wfdb.rdann(str(path.with_suffix("")), path.suffix[1:])
    sym, at = ann.symbol, ann.sample
    out: dict[str, list] = {"P": [], "QRS": [], "T": []}
    for i, s in enumerate(sym):
        if s in PEAK:
            on = int(at[i - 1]) if i > 0 and sym[i - 1] == "(" else -1
            off = int(at[i + 1]) if i + 1 < len(sym) and sym[i + 1] == ")" else -1
            out[PEAK[s]].append((on, int(at[i]), off))
    return out


def _global(marks: list[tuple[int, int, int]]) -> tuple[int, int, int, int] | None:
    ons = sorted(m[0] for m in marks if m[0] >= 0)
    offs = sorted((m[2] for m in marks if m[2] >= 0), reverse=True)
    if len(ons) < MIN_LEADS or len(offs) < MIN_LEADS:
        return None
    return ons[1], offs[1], ons[0], offs[0]


def reference_beats(ludb: Path, record: int) -> list[RefBeat]:
    leads = [read_waves(ludb / f"{record}.{lead}") for lead in LUDB_LEADS]
    peaks = sorted(p for w in leads for _, p, _ in w["QRS"])
    clusters: list[list[int]] = []
    for p in peaks:
        if clusters and p - clusters[-1][0] <= BEAT_WINDOW_MS / MS:
            clusters[-1].append(p)
        else:
            clusters.append([p])
    rs = [int(np.median(c)) for c in clusters if len(c) >= MIN_LEADS]
    beats = []
    for k, r in enumerate(rs):
        prev_r = rs[k - 1] if k else r - int(0.7 * FS)
        next_r = rs[k + 1] if k + 1 < len(rs) else r + int(1.0 * FS)
        qrs = [m for w in leads for m in w["QRS"] if abs(m[1] - r) <= BEAT_WINDOW_MS / MS]
        p = [m for w in leads for m in w["P"] if prev_r < m[1] < r]
        t = [m for w in leads for m in w["T"] if r < m[1] < next_r]
        beats.append(RefBeat(r, _global(qrs), _global(p), _global(t)))
    return beats


def reference_intervals(beats: list[RefBeat], earliest: bool = False) -> dict[str, float | None]:
    """The record's PR, P, QRS, QT (ms): medians over its beats, from the 2nd earliest/latest (or the extremes)."""
    j = 2 if earliest else 0
    per = {k: [] for k in INTERVALS}
    for b in beats:
        if b.qrs is None:
            continue
        q_on, q_off = b.qrs[j], b.qrs[j + 1]
        per["qrs_ms"].append((q_off - q_on) * MS)
        if b.p is not None:
            per["pr_ms"].append((q_on - b.p[j]) * MS)
            per["p_ms"].append((b.p[j + 1] - b.p[j]) * MS)
        if b.t is not None:
            per["qt_ms"].append((b.t[j + 1] - q_on) * MS)
    return {k: float(np.median(v)) if v else None for k, v in per.items()}


def rhythm(ludb: Path, record: int) -> str:
    text = (ludb / f"{record}.hea").read_text(errors="replace")
    m = re.search(r"#Rhythm:\s*(.+)", text)
    out = m.group(1).strip().rstrip(".") if m else "?"
    if re.search(r"pacing", text, re.IGNORECASE):
        out += " (paced)"
    return out


# --- ours against the reference --------------------------------------------------------------------

@dataclass
class RecordResult:
    record: int
    half: str
    rhythm: str
    ref: dict                     # interval -> ms (2nd earliest / latest)
    ref_extreme: dict             # interval -> ms (earliest / latest)
    ours: dict                    # interval -> ms or None
    reasons: dict                 # interval -> why ours is None
    ms: float                     # measure_ecg time
    counts: dict = field(default_factory=dict)     # wave -> [tp, fn, fp]
    errors: dict = field(default_factory=dict)     # boundary -> [ours - ref, ms] per found wave


def score_record(ludb: Path, record: int) -> RecordResult:
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    beats = reference_beats(ludb, record)
    signal, _ = preprocess_ecg(read_ecg(ludb / f"{record}.hea"))
    start = time.perf_counter()
    meas = measure_ecg(signal, FS)
    took = (time.perf_counter() - start) * 1000
    ours = {k: getattr(meas, k) for k in INTERVALS}
    res = RecordResult(record, half(record), rhythm(ludb, record), reference_intervals(beats),
                       reference_intervals(beats, earliest=True), ours,
                       {k: meas.quality.reasons.get(k, "") for k in INTERVALS if ours[k] is None}, took)
    counts = {w: [0, 0, 0] for w in ("P", "QRS", "T")}
    errors = {b: [] for b in BOUNDARIES}
    r_peaks = np.asarray(meas.r_peaks if meas.r_peaks is not None else [], dtype=np.int64)
    per_beat = meas.beat_waves or []                # each beat's global waves (none: no usable signal)
    annotated = [b for b in beats if b.qrs is not None]
    if not annotated:
        return res
    tol = MATCH_MS / MS
    lo, hi = annotated[0].r - tol, annotated[-1].r + tol
    # P and T waves are counted (as found or false) only inside the span the cardiologists marked them in: the
    # first and last beats often have a QRS marked and their P or T not (the record cuts it off)
    span = {name: (min((b.r for b in annotated if getattr(b, name.lower()) is not None), default=lo),
                   max((b.r for b in annotated if getattr(b, name.lower()) is not None), default=hi))
            for name in ("P", "T")}
    span["QRS"] = (lo, hi)
    matched: set[int] = set()
    for b in annotated:
        k = int(np.argmin(np.abs(r_peaks - b.r))) if r_peaks.size else -1
        hit = k >= 0 and abs(r_peaks[k] - b.r) <= tol and k not in matched
        if hit:
            matched.add(k)
        for name, ref in (("QRS", b.qrs), ("P", b.p), ("T", b.t)):
            ours_w = getattr(per_beat[k], name.lower()) if hit else None    # each beat's own (ectopic ones too)
            if ours_w is not None:
                on, off = ours_w
            if ref is None:
                counts[name][2] += ours_w is not None and span[name][0] <= b.r <= span[name][1]
                continue
            # P and QRS matched centre to centre; T by its end (ours has no T onset: its wave starts at the QRS end)
            apart = abs(off - ref[1]) if name == "T" else abs((on + off) / 2 - (ref[0] + ref[1]) / 2)
            if ours_w is None or apart > tol:
                counts[name][1] += 1
                counts[name][2] += ours_w is not None
                continue
            counts[name][0] += 1
            if name == "QRS":
                errors["qrs_on"].append((on - ref[0]) * MS)
                errors["qrs_off"].append((off - ref[1]) * MS)
            elif name == "P":
                errors["p_on"].append((on - ref[0]) * MS)
                errors["p_off"].append((off - ref[1]) * MS)
            else:
                errors["t_off"].append((off - ref[1]) * MS)
    for k in range(len(r_peaks)):                   # our beats inside the annotated span with no reference beat
        if k not in matched and lo <= r_peaks[k] <= hi:
            counts["QRS"][2] += 1
            for name in ("P", "T"):
                counts[name][2] += (getattr(per_beat[k], name.lower()) is not None
                                    and span[name][0] - tol <= r_peaks[k] <= span[name][1] + tol)
    res.counts, res.errors = counts, errors
    return res


def ludb_records(ludb: Path) -> list[int]:
    return sorted(int(p.stem) for p in ludb.glob("*.hea"))


# --- summaries ---------------------------------------------------------------------------------------

def interval_stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else None, "sd": float(v.std()) if v.size else None}


def summarize(results: list[RecordResult]) -> dict:
    out: dict = {"records": len(results), "detection": {}, "boundaries": {}, "intervals": {}, "intervals_extreme": {},
                 "nulls": {}}
    for w in ("P", "QRS", "T"):
        tp, fn, fp = (sum(r.counts.get(w, [0, 0, 0])[i] for r in results) for i in range(3))
        out["detection"][w] = {"tp": tp, "fn": fn, "fp": fp, "se": tp / (tp + fn) if tp + fn else None,
                               "ppv": tp / (tp + fp) if tp + fp else None}
    for b in BOUNDARIES:
        out["boundaries"][b] = interval_stats(e for r in results for e in r.errors.get(b, []))
    for key, name in (("intervals", "ref"), ("intervals_extreme", "ref_extreme")):
        for k in INTERVALS:
            out[key][k] = interval_stats(r.ours[k] - getattr(r, name)[k] for r in results
                              if r.ours[k] is not None and getattr(r, name)[k] is not None)
    for k in INTERVALS:
        with_ref = [r for r in results if r.ref[k] is not None]
        null = [r for r in with_ref if r.ours[k] is None]
        without = [r for r in results if r.ref[k] is None]
        out["nulls"][k] = {"with_ref": len(with_ref), "null": len(null),
                           "no_ref": len(without), "ours_where_no_ref": sum(r.ours[k] is not None for r in without),
                           "reasons": sorted({r.reasons.get(k, "") for r in null})}
    times = [r.ms for r in results]
    out["measure_ms"] = {"median": float(np.median(times)), "p95": float(np.percentile(times, 95)),
                         "max": float(np.max(times))}
    return out


# --- cart files --------------------------------------------------------------------------------------

def cart_files(real: Path) -> list[Path]:
    files = [p for d in CART_DIRS for p in sorted((real / d).glob("*")) if p.is_file()]
    vendor = real.parent / "vendor" / "philips_129DYPRG.xml"
    if vendor.exists():
        files.append(vendor)
    try:
        from pydicom.data import get_testdata_file
        files.append(Path(get_testdata_file("waveform_ecg.dcm")))
    except (ImportError, ValueError, OSError):          # pydicom's test file is optional here
        pass
    return files


def _diff(key: str, ours: float, theirs: float) -> float:
    d = float(ours) - float(theirs)
    return (d + 180.0) % 360.0 - 180.0 if key.endswith("_deg") else d


def score_carts(real: Path) -> list[dict]:
    from gem_runtime.errors import GemEdgeError
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    rows = []
    for path in cart_files(real):
        row: dict = {"file": f"{path.parent.name}/{path.name}", "status": "", "values": []}
        try:
            record = read_ecg(path)
            signal, _ = preprocess_ecg(record)
        except GemEdgeError as e:
            why = str(e).split(": ", 1)[-1][:140]
            if path.name in NO_SIGNAL_FILES:             # refused by the reader: no numbers, as it should be
                row["status"], row["no_signal_ok"] = f"refused (by the reader): {why}", True
            else:
                row["status"] = f"not readable yet: {why}"
            rows.append(row)
            continue
        except Exception as e:                          # noqa: BLE001 - a reader bug: report it, go on
            row["status"] = f"not readable yet (reader bug {type(e).__name__}: {str(e)[:100]})"
            rows.append(row)
            continue
        meas = measure_ecg(signal, FS)
        measured = [k for k in TOLERANCE if getattr(meas, k) is not None]
        if path.name in NO_SIGNAL_FILES:
            row["status"] = ("refused: " + meas.quality.reasons_text()[:140] if not measured else
                             f"MEASURED a recording without signal: {', '.join(measured)}")
            row["no_signal_ok"] = not measured
            rows.append(row)
            continue
        device = record.device.measurements if record.device is not None else {}
        row["device"] = (f"{record.device.vendor} {record.device.model}".strip() if record.device else "-")
        if not device:
            row["status"] = "no device values"
        for key, tol in TOLERANCE.items():
            if key not in device:
                continue
            ours = getattr(meas, key)
            d = None if ours is None else _diff(key, ours, device[key])
            row["values"].append({"key": key, "ours": ours, "device": device[key], "diff": d,
                                  "within": d is not None and abs(d) <= tol,
                                  "reason": meas.quality.reasons.get(key, "") if ours is None else ""})
        rows.append(row)
    return rows


def cart_summary(rows: list[dict]) -> dict:
    vals = [v for r in rows for v in r["values"]]
    by_key = {}
    for key in TOLERANCE:
        kv = [v for v in vals if v["key"] == key]
        by_key[key] = {"n": len(kv), "within": sum(v["within"] for v in kv), "null": sum(v["ours"] is None for v in kv)}
    return {"values": len(vals), "within": sum(v["within"] for v in vals), "by_key": by_key,
            "unreadable": [r["file"] for r in rows if r["status"].startswith("not readable")],
            "no_signal_refused": all(r.get("no_signal_ok", True) for r in rows)}


# --- the run and its report ----------------------------------------------------------------------------

def run(ludb: Path, real: Path, label: str, out: Path, neurokit: bool = False, log=print) -> dict:
    from .machine import cpu_info

    records = ludb_records(ludb)
    results = []
    for i, record in enumerate(records):
        results.append(score_record(ludb, record))
        if (i + 1) % 25 == 0:
            log(f"LUDB {i + 1}/{len(records)}")
    summary = {"label": label, "cpu": cpu_info()["model"],
               "all": summarize(results),
               "tune": summarize([r for r in results if r.half == "tune"]),
               "held-out": summarize([r for r in results if r.half == "held-out"])}
    carts = score_carts(real)
    summary["carts"] = cart_summary(carts)
    summary["cart_rows"] = carts
    summary["per_record"] = [{"record": r.record, "half": r.half, "rhythm": r.rhythm, "ref": r.ref, "ours": r.ours,
                              "reasons": r.reasons, "ms": r.ms} for r in results]
    if neurokit:
        from .delineation_neurokit import score_neurokit

        try:
            summary["neurokit"] = {"held-out": score_neurokit(ludb, [r.record for r in results
                                                                     if r.half == "held-out"])}
        except ImportError:
            log("neurokit2 is not installed: skipped (`pip install neurokit2`)")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{label}.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def print_summary(s: dict, log=print) -> None:
    """One line per half and one for the carts (delineation_report.print_summary)."""
    from .delineation_report import print_summary as summary_lines

    summary_lines(s, log)


def write_markdown(out: Path, md: Path, ludb: Path, label: str) -> None:
    """benchmarks/delineation.md from every run in `out` (delineation_report.write_markdown)."""
    from .delineation_report import write_markdown as write

    write(out, md, ludb, label)
