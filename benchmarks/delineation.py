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

Ours: `measure_ecg` on the record as `gem-run` reads it (`read_ecg` + `preprocess_ecg`). Our fiducials are global
ones on the median beat; each beat gets them at the same distance from its own (realigned) R peak.
Detection per wave type: a reference beat's wave is found (TP) when our beat within 150 ms of its R has that wave
within 150 ms of it (P and QRS: wave centre to wave centre; T: T end to T end); ours with no reference wave is a false positive. Boundary
errors (ours - reference, ms) over the found waves.

The records are split in two halves: `tune` (record number mod 4 == 1) on which the delineation was tuned, and
`held-out` (mod 4 == 3), which it was only evaluated on.

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

HERE = Path(__file__).parent
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
    if re.search(r"pacing", text, re.I):
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


def _our_waves(meas) -> dict[str, tuple[int, int] | None]:
    """Our global fiducials as offsets (samples) from the median beat's R: {"P": (on, off), "QRS": ..., "T": ...}."""
    f = meas.fiducials
    if not f:
        return {"P": None, "QRS": None, "T": None}
    r = f["r"]
    return {"P": (f["p_on"] - r, f["p_off"] - r) if f.get("p_on") is not None else None,
            "QRS": (f["qrs_on"] - r, f["qrs_off"] - r) if f.get("qrs_on") is not None else None,
            "T": (f["qrs_off"] - r, f["t_end"] - r) if f.get("t_end") is not None else None}


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
    waves = _our_waves(meas)
    r_peaks = np.asarray(meas.r_peaks if meas.r_peaks is not None else [], dtype=np.int64)
    kept = getattr(meas, "beat_kept", None)
    if kept is None or len(kept) != len(r_peaks):
        kept = np.ones(len(r_peaks), dtype=bool)
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
            ours_w = waves[name] if hit and (name == "QRS" or kept[k]) else None
            if ours_w is not None:
                on, off = r_peaks[k] + ours_w[0], r_peaks[k] + ours_w[1]
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
                counts[name][2] += (waves[name] is not None and bool(kept[k])
                                    and span[name][0] - tol <= r_peaks[k] <= span[name][1] + tol)
    res.counts, res.errors = counts, errors
    return res


def ludb_records(ludb: Path) -> list[int]:
    return sorted(int(p.stem) for p in ludb.glob("*.hea"))


# --- summaries ---------------------------------------------------------------------------------------

def _ms(values) -> dict:
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
        out["boundaries"][b] = _ms(e for r in results for e in r.errors.get(b, []))
    for key, name in (("intervals", "ref"), ("intervals_extreme", "ref_extreme")):
        for k in INTERVALS:
            out[key][k] = _ms(r.ours[k] - getattr(r, name)[k] for r in results
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
    except Exception:                                   # noqa: BLE001 - pydicom's test file is optional here
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


# --- neurokit2 (a library delineator, for comparison only) -----------------------------------------

def neurokit_intervals(signal: np.ndarray) -> dict[str, float | None]:
    """neurokit2's DWT delineation (ecg_delineate, method="dwt") per lead, the record's global intervals as ours:
    per beat, the 2nd earliest onset / 2nd latest offset over the leads, then the median over beats."""
    import neurokit2 as nk

    lead_ii = signal[1]
    clean = nk.ecg_clean(lead_ii, sampling_rate=FS)
    _, info = nk.ecg_peaks(clean, sampling_rate=FS)
    peaks = np.asarray(info["ECG_R_Peaks"])
    keys = ("ECG_P_Onsets", "ECG_P_Offsets", "ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets")
    per_lead, lead_ii_marks = [], None
    for i, x in enumerate(signal):
        try:
            _, waves = nk.ecg_delineate(nk.ecg_clean(x, sampling_rate=FS), peaks, sampling_rate=FS, method="dwt")
            per_lead.append({k: np.asarray(waves[k], dtype=float) for k in keys})
            if i == 1:
                lead_ii_marks = per_lead[-1]
        except Exception:                              # noqa: BLE001 - a lead neurokit2 cannot delineate
            continue
    if len(per_lead) < 2:
        return {v: {k: None for k in INTERVALS} for v in ("second", "median", "lead_ii")}
    stack = {k: np.stack([lw[k][:len(peaks)] for lw in per_lead]) for k in keys}   # (leads, beats)

    def second(a, latest=False):
        """(beats,): per beat, the 2nd earliest (2nd latest) of the leads' marks; NaN where under 2 leads have one."""
        a = np.where(np.isfinite(a), a, -np.inf if latest else np.inf)
        a = -np.sort(-a, axis=0) if latest else np.sort(a, axis=0)
        return np.where(np.isfinite(a[1]), a[1], np.nan)

    def middle(a, latest=False):
        """(beats,): per beat, the median of the leads' marks (robust to neurokit2's stray per-lead marks)."""
        return np.nanmedian(np.where(np.isfinite(a), a, np.nan), axis=0)

    def med(v):
        v = v[np.isfinite(v)]
        return float(np.median(v)) * MS if v.size else None

    def lead_ii(a, latest=False):
        return a[0]

    out = {}
    picks = [("second", second, stack), ("median", middle, stack)]
    if lead_ii_marks is not None:
        picks.append(("lead_ii", lead_ii, {k: lead_ii_marks[k][None, :len(peaks)] for k in keys}))
    else:
        out["lead_ii"] = {k: None for k in INTERVALS}
    for name, pick, stack in picks:
        p_on, p_off = pick(stack["ECG_P_Onsets"]), pick(stack["ECG_P_Offsets"], True)
        q_on, q_off = pick(stack["ECG_R_Onsets"]), pick(stack["ECG_R_Offsets"], True)
        t_off = pick(stack["ECG_T_Offsets"], True)
        out[name] = {"pr_ms": med(q_on - p_on), "p_ms": med(p_off - p_on), "qrs_ms": med(q_off - q_on),
                     "qt_ms": med(t_off - q_on)}
    return out


def score_neurokit(ludb: Path, records: list[int]) -> dict:
    import warnings

    import neurokit2 as nk

    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    variants = ("second", "median", "lead_ii")
    errs = {v: {k: [] for k in INTERVALS} for v in variants}
    nulls = {v: {k: 0 for k in INTERVALS} for v in variants}
    times = []
    for record in records:
        ref = reference_intervals(reference_beats(ludb, record))
        signal, _ = preprocess_ecg(read_ecg(ludb / f"{record}.hea"))
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = neurokit_intervals(np.asarray(signal, dtype=float))
        except Exception:                              # noqa: BLE001 - count as all null
            theirs = {v: {k: None for k in INTERVALS} for v in variants}
        times.append((time.perf_counter() - start) * 1000)
        for v in variants:
            for k in INTERVALS:
                if ref[k] is None:
                    continue
                if theirs[v][k] is None:
                    nulls[v][k] += 1
                else:
                    errs[v][k].append(theirs[v][k] - ref[k])
    return {"version": nk.__version__, "records": len(records), "ms_median": float(np.median(times)),
            **{v: {"intervals": {k: _ms(e) for k, e in errs[v].items()}, "nulls": nulls[v]} for v in variants}}


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
        try:
            summary["neurokit"] = {"held-out": score_neurokit(ludb, [r.record for r in results
                                                                     if r.half == "held-out"])}
        except ImportError:
            log("neurokit2 is not installed: skipped (`pip install neurokit2`)")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{label}.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def _f(x, fmt="{:+.1f}"):
    return "-" if x is None else fmt.format(x)


def interval_table(runs: list[dict]) -> list[str]:
    lines = ["| run | half | quantity | records with a reference | ours null | ours - cardiologists, mean +- SD (ms) "
             "| vs earliest/latest | target met |", "|---|---|---|---:|---:|---:|---:|---|"]
    for s in runs:
        for h in ("tune", "held-out"):
            for k in INTERVALS:
                st, ex, nl = s[h]["intervals"][k], s[h]["intervals_extreme"][k], s[h]["nulls"][k]
                met = (st["mean"] is not None and abs(st["mean"]) <= TARGET_MEAN[k] and st["sd"] <= TARGET_SD[k])
                lines.append(f"| {s['label']} | {h} | {k} | {nl['with_ref']} | {nl['null']} "
                             f"({100 * nl['null'] / max(nl['with_ref'], 1):.0f}%) | {_f(st['mean'])} +- "
                             f"{_f(st['sd'], '{:.1f}')} | {_f(ex['mean'])} +- {_f(ex['sd'], '{:.1f}')} | "
                             f"{'yes' if met else 'no'} |")
    return lines


def detection_table(runs: list[dict]) -> list[str]:
    lines = ["| run | half | P Se / PPV | QRS Se / PPV | T Se / PPV | P on | P off | QRS on | QRS off | T off |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in runs:
        for h in ("tune", "held-out"):
            d, b = s[h]["detection"], s[h]["boundaries"]
            cells = [f"{_f(100 * d[w]['se'] if d[w]['se'] is not None else None, '{:.1f}')} / "
                     f"{_f(100 * d[w]['ppv'] if d[w]['ppv'] is not None else None, '{:.1f}')}" for w in ("P", "QRS", "T")]
            cells += [f"{_f(b[k]['mean'])} +- {_f(b[k]['sd'], '{:.1f}')}" for k in BOUNDARIES]
            lines.append(f"| {s['label']} | {h} | " + " | ".join(cells) + " |")
    return lines


def null_table(s: dict) -> list[str]:
    lines = ["| half | quantity | with a reference | ours null | no reference (no P wave marked) | ours given there | "
             "reasons for our nulls |", "|---|---|---:|---:|---:|---:|---|"]
    for h in ("tune", "held-out"):
        for k in INTERVALS:
            n = s[h]["nulls"][k]
            lines.append(f"| {h} | {k} | {n['with_ref']} | {n['null']} | {n['no_ref']} | {n['ours_where_no_ref']} | "
                         f"{'; '.join(x for x in n['reasons'] if x)[:300] or '-'} |")
    return lines


def cart_table(s: dict) -> list[str]:
    lines = [f"{s['carts']['within']} of {s['carts']['values']} device values within tolerance "
             f"({', '.join(f'{k} {v}' for k, v in TOLERANCE.items())}).", "",
             "| file | device | quantity | ours | device | ours - device | within |", "|---|---|---|---:|---:|---:|---|"]
    for row in s["cart_rows"]:
        if not row["values"]:
            lines.append(f"| {row['file']} | {row.get('device', '-')} | {row['status'] or 'no device values'} "
                         f"| | | | |")
            continue
        for v in row["values"]:
            ours = "-" if v["ours"] is None else f"{v['ours']:.0f}"
            diff = f"{v['diff']:+.0f}" if v["diff"] is not None else f"(null: {v['reason'][:60]})"
            lines.append(f"| {row['file']} | {row.get('device', '-')} | {v['key']} | {ours} | {v['device']:.0f} | "
                         f"{diff} | {'yes' if v['within'] else '**no**'} |")
    return lines


def worst_records(s: dict, n: int = 4) -> list[tuple[int, str, float]]:
    scored = []
    for r in s["per_record"]:
        for k in ("qrs_ms", "qt_ms", "pr_ms"):
            if r["ours"][k] is not None and r["ref"][k] is not None:
                scored.append((abs(r["ours"][k] - r["ref"][k]), r["record"], k, r["ours"][k] - r["ref"][k]))
    scored.sort(reverse=True)
    seen, out = set(), []
    for _, rec, k, d in scored:
        if rec not in seen:
            seen.add(rec)
            out.append((rec, k, d))
        if len(out) == n:
            break
    return out


def draw_worst(ludb: Path, s: dict, out_dir: Path) -> list[str]:
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_runtime.render_median import draw_median_beats

    lines = []
    for rec, k, d in worst_records(s):
        meas = measure_ecg(preprocess_ecg(read_ecg(ludb / f"{rec}.hea"))[0], FS)
        png = out_dir / f"delineation_ludb{rec}_median_beats.png"
        if meas.median_beats is not None:
            draw_median_beats(meas, png)
        r = next(x for x in s["per_record"] if x["record"] == rec)
        lines.append(f"- LUDB {rec} ({r['half']}, {r['rhythm']}): {k} off by {d:+.0f} ms "
                     f"(ours {r['ours'][k]:.0f}, cardiologists {r['ref'][k]:.0f}); `{png.name}`")
    return lines


def print_summary(s: dict, log=print) -> None:
    for h in ("tune", "held-out"):
        d = s[h]["detection"]
        log(f"[{s['label']}] {h}: " + ", ".join(
            f"{k} {_f(v['mean'])}+-{_f(v['sd'], '{:.1f}')} null {s[h]['nulls'][k]['null']}/{s[h]['nulls'][k]['with_ref']}"
            for k, v in s[h]["intervals"].items()) + "; Se/PPV " + ", ".join(
            f"{w} {100 * (d[w]['se'] or 0):.1f}/{100 * (d[w]['ppv'] or 0):.1f}" for w in d))
    c = s["carts"]
    log(f"[{s['label']}] carts: {c['within']}/{c['values']} within; unreadable {len(c['unreadable'])}; "
        f"leads-off refused: {c['no_signal_refused']}; measure_ecg {s['all']['measure_ms']['median']:.1f} ms median "
        f"({s['cpu']})")


REFERENCE = """\
The reference, per beat (issue 24): a beat is a cluster of the 12 leads' QRS peaks, its R their median; its QRS
marks are those of every lead whose QRS peak lies within 120 ms of that R, its P marks those whose P peak lies
between the previous R and this one, its T marks those whose T peak lies between this R and the next; the global
onset is the second earliest onset across the leads, the global offset the second latest (the earliest / latest
are reported too); a wave marked in fewer than 2 leads is not counted. The record's PR, P duration, QRS and QT are
the medians over its beats. Ours: `measure_ecg` on the record as `gem-run` reads it (`read_ecg`,
`preprocess_ecg`); our fiducials are global ones on the median beat, placed on each beat at the same distance from
its own R. Detection: a reference wave is found when our beat within 150 ms of its R has that wave within 150 ms
(P, QRS: centre to centre; T: end to end); ectopic beats (left out of our median) get no P or T from us, which
counts against T and P sensitivity. P and T are only counted inside the span of beats the cardiologists marked
them in (the first and last beats of a record often have only the QRS marked)."""

CHANGES = """\
What changed for issue 24 (runtime/measure): the QRS onset and offset from the RMS of all good leads (5% / 15% of
its QRS peak; of the spatial-velocity, VCG-magnitude and RMS thresholds tried, the least scatter against the
cardiologists: onset SD 5 ms, offset 6 ms on the tune half), the offset kept within -30/+10 ms of the motion-based
one and left at the motion-based J point after a slur or on an ST plateau; every edge then moved by a constant
toward the cardiologists' convention (fiducials.EDGE_SHIFT_MS: QRS onset -10, QRS offset +18, P offset +8, T end
+10 ms; fitted on the tune half and held back where the carts and the simulator disagree, see below); a P wave
accepted up to 180 ms long (was 140: most of the PRs we did not give), its onset at most 80 ms before its peak,
a beat-to-beat shift up to 5 ms and 0.03 mV; no numbers from a record without usable signal (flat, saturated,
identical common-mode leads, under 2 independent leads with signal, no repeating QRS).

The references pull apart, so the shifts are a compromise. The simulator's truth (a 15 uV threshold on the
noise-free dipole; the demo model's training reports state it) reads the QRS about 20 ms and the QT about 30 ms
shorter than the cardiologists' convention: moving our edges all the way to the cardiologists' (QRS onset -17, QRS
offset +25, T end +20 ms) made the grounding check (20 ms for PR/QRS, 30 ms for QT/QTc) call the simulator's own
true numbers wrong (tests/test_grounding.py) and lengthened QRS on the carts (114 vs 96, 108 vs 86, 92 vs 75). And
the GE carts (12SL) read PR about 35 ms shorter than we do on two files, where LUDB's PR agrees with ours on average.
With the shifts held back, QRS and QT come out 8 and 18 ms short of the cardiologists, within the carts' values."""

PUBLISHED = """\
Published LUDB delineators, for scale (their figures are per lead and per wave, against each lead's own marks,
not the global second-earliest / second-latest reference used here; compare the order of magnitude):
- Kalyakulina et al., "LUDB: a new open-access validation tool for electrocardiogram delineation algorithms",
  IEEE Access 8 (2020) 186181 (arXiv:1809.03393): the database paper, with a wavelet delineator (after Martinez
  et al. 2004) as its case study, reporting per wave Se, PPV and the mean +- SD of each boundary's error on LUDB.
- Moskalenko, Zolotykh, Osipov, "Deep learning for ECG segmentation" (arXiv:2001.04689, 2020): a U-Net trained
  and tested on LUDB; F1 of onset/offset detection at least 97.8% (P), 99.5% (T) and 99.9% (QRS).
- Martinez et al., "A wavelet-based ECG delineator: evaluation on standard databases", IEEE TBME 51 (2004) 570:
  the reference single-lead method (QT database: QRS Se 99.66%, P+ 99.56%; boundary errors within the CSE
  tolerances); neurokit2's `ecg_delineate(method="dwt")` follows it, measured above on the held-out LUDB records.
- Krasteva et al., "Delineation of 12-lead ECG representative beats using convolutional encoder-decoders",
  Sensors 24 (2024) 4645: global delineation of the 12-lead representative beat, as ours; on the CSE database
  P duration 2.6 +- 11.0 ms, PQ 0.9 +- 5.8 ms, QRS -2.4 +- 5.4 ms, QT -0.7 +- 10.3 ms (IEC 60601-2-25 tolerances met).
"""


def write_markdown(out: Path, md: Path, ludb: Path, label: str) -> None:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    runs.sort(key=lambda s: (s["label"] != "baseline", s["label"] != label, s["label"]))
    current = next(s for s in runs if s["label"] == label)
    lines = ["# Delineation against cardiologists (LUDB) and against the carts' own values", "",
             "Written by `gem-bench delineation --label NAME --md benchmarks/delineation.md` (benchmarks/delineation.py; "
             "each run's JSON in `benchmarks/results/delineation/`). `baseline` is the delineation before issue 24, "
             f"`{label}` the one now. CPU: {current['cpu']}.", "",
             "**Tuned on one half, reported on both.** The 100 shared LUDB records (odd numbers 1-199) are split by "
             "record number: `tune` (number mod 4 == 1, 50 records) is the only half looked at while changing the "
             "delineation; `held-out` (mod 4 == 3, 50 records) and the cart files were only evaluated. ", "",
             REFERENCE, "", CHANGES, "",
             "## Global intervals against the cardiologists", "",
             "Targets (issue 24): |mean| <= 10 ms for PR, P duration and QRS, <= 15 ms for QT; SD <= 15 ms (P, PR), "
             "<= 10 ms (QRS), <= 30 ms (QT). `vs earliest/latest`: the same against the earliest onset and latest "
             "offset over the leads.", ""]
    lines += interval_table(runs)
    lines += ["", "## Detection and boundaries (per beat)", "",
              "Se / PPV in %; boundary errors ours - reference (2nd earliest onset / 2nd latest offset), ms, over "
              "the detected waves. Targets: Se and PPV >= 98% (QRS >= 99.5%).", ""]
    lines += detection_table(runs)
    lines += ["", f"## Null rates and their reasons ({label})", "",
              "`no reference`: records where the cardiologists marked no P wave in at least 2 leads (atrial "
              "fibrillation, flutter, some paced records); `ours given there`: a PR we gave anyway.", ""]
    lines += null_table(current)
    nk_run = next((s for s in runs if "neurokit" in s), None)
    if nk_run is not None:
        nk = nk_run["neurokit"]["held-out"]
        lines += ["", "## neurokit2 on the held-out half", "",
                  f"neurokit2 {nk['version']} `ecg_delineate(method='dwt')` (after Martinez et al. 2004) on each "
                  "lead, R peaks from lead II, the per-beat global marks formed as the reference's (2nd earliest "
                  "onset / 2nd latest offset over the leads) or as the median over the leads, then the median over "
                  f"beats; {nk['ms_median']:.0f} ms per record (ours: "
                  f"{current['all']['measure_ms']['median']:.0f} ms).", "",
                  "| quantity | ours (held-out) | neurokit2, 2nd earliest/latest | neurokit2, median over leads | "
                  "neurokit2, lead II alone |", "|---|---:|---:|---:|---:|"]
        variants = ("second", "median", "lead_ii")
        for k in INTERVALS:
            cells = [current["held-out"]["intervals"][k]] + [nk[v]["intervals"][k] for v in variants]
            nulls = [current["held-out"]["nulls"][k]["null"]] + [nk[v]["nulls"][k] for v in variants]
            lines.append(f"| {k} | " + " | ".join(f"{_f(c['mean'])} +- {_f(c['sd'], '{:.1f}')} (null {n})"
                                                   for c, n in zip(cells, nulls)) + " |")
    lines += ["", "## Cart files: ours against the device's own measurements", ""]
    for s in runs:
        c = s["carts"]
        lines.append(f"- `{s['label']}`: {c['within']} of {c['values']} device values within tolerance; "
                     f"leads-off file refused: {'yes' if c['no_signal_refused'] else 'no'}; not readable yet: "
                     f"{len(c['unreadable'])}.")
    lines += ["", f"Per value ({label}):", ""] + cart_table(current)
    lines += ["", f"## Where we are worst ({label}), with our median beats", ""]
    lines += draw_worst(ludb, current, md.parent)
    lines += ["", "## Time", "", f"`measure_ecg` per LUDB record ({current['cpu']}): "
              f"{current['all']['measure_ms']['median']:.1f} ms median, {current['all']['measure_ms']['p95']:.1f} ms "
              f"p95, {current['all']['measure_ms']['max']:.1f} ms max (one process, other work on the machine).", "",
              "## Published figures", "", PUBLISHED]
    md.write_text("\n".join(lines) + "\n")
