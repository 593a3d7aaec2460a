"""The grounded synthetic corpus: simulated ECGs, their images and GEM-style interpretations.

Records follow the ECG-Grounding layout GEM trains on (`id`, `ecg`, `image`, `conversations`,
`machine_measurements`). Each text cites the measured values and the lead findings behind every
diagnosis and ends with `Impression: <canonical names>.`. An absent finding is never named (not even
negated), so string matching on the text gives exactly the record's labels.

Record i draws from its own rng, derived from (seed, i): any split of the indices over processes
writes the same corpus.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np

from gem_runtime.constants import DEFAULT_QUESTION, ECG_FS, IMAGE_TOKEN, LEADS
from gem_runtime.errors import GemEdgeError
from gem_train.simulate import (
    AF, ANT_STE, AVB1, CONDITIONS, INF_STE, LAD, LBBB, LVH, NSR, RAD, RBBB, SB, STACH, EcgTruth,
    simulate_ecg,
)

QUESTIONS = (
    DEFAULT_QUESTION,
    "Interpret this 12-lead ECG and explain the evidence behind each finding.",
    "What does this ECG show? Cite the measurements and leads that support your diagnosis.",
    "Provide a grounded interpretation of this ECG: rhythm, rate, intervals, axis and diagnosis.",
)
DEFAULT_QUESTION_SHARE = 0.5
AFL = "atrial flutter"  # a rhythm of the corpus's language the simulator never draws: real_corpus's made flutters
ADC_GAIN = 1000.0   # digital units per mV: 1 uV resolution in the .dat files
STE_LEADS = {INF_STE: ("II", "III", "aVF"), ANT_STE: ("V1", "V2", "V3", "V4")}

# --- Sentence templates: a few variants each, small shared vocabulary ---------------------------
_RHYTHM = {
    NSR: ("Normal sinus rhythm at {hr} bpm with regular RR intervals and an upright P wave before every QRS complex.",
          "The rhythm is normal sinus rhythm at {hr} bpm; RR intervals are regular and each QRS is preceded by a P wave.",
          "Regular rhythm at {hr} bpm with a P wave before every QRS complex, consistent with normal sinus rhythm."),
    SB: ("Sinus rhythm at {hr} bpm with regular RR intervals; the rate below 60 bpm indicates sinus bradycardia.",
         "Regular rhythm at {hr} bpm with a P wave before every QRS complex, consistent with sinus bradycardia.",
         "The rhythm is sinus at {hr} bpm with regular RR intervals, a sinus bradycardia."),
    STACH: ("Sinus rhythm at {hr} bpm with regular RR intervals; the rate above 100 bpm indicates sinus tachycardia.",
            "Regular rhythm at {hr} bpm with a P wave before every QRS complex, consistent with sinus tachycardia.",
            "The rhythm is sinus at {hr} bpm with regular RR intervals, a sinus tachycardia."),
    AFL: ("Sawtooth flutter waves in II, III and aVF at a ventricular rate of {hr} bpm, consistent with atrial flutter.",
          "Atrial flutter with a ventricular rate of {hr} bpm; flutter waves are seen in the inferior leads and V1.",
          "Flutter waves in the inferior leads with a ventricular rate of {hr} bpm indicate atrial flutter."),
    AF: ("Irregularly irregular rhythm at a mean rate of {hr} bpm with no P waves and a fibrillatory baseline, consistent with atrial fibrillation.",
         "Irregularly irregular RR intervals at a mean rate of {hr} bpm, absent P waves and fibrillatory waves in V1 indicate atrial fibrillation.",
         "Atrial fibrillation with a mean ventricular rate of {hr} bpm: RR intervals are irregularly irregular and no P waves are seen."),
}
_INTERVALS = ("The PR interval is {pr} ms, QRS duration {qrs} ms and QT/QTc {qt}/{qtc} ms.",
              "PR {pr} ms, QRS {qrs} ms, QT {qt} ms and QTc {qtc} ms.",
              "Intervals: PR {pr} ms, QRS {qrs} ms, QT/QTc {qt}/{qtc} ms.")
_INTERVALS_AF = ("The QRS duration is {qrs} ms and QT/QTc {qt}/{qtc} ms.",
                 "QRS {qrs} ms, QT {qt} ms and QTc {qtc} ms.",
                 "Intervals: QRS {qrs} ms, QT/QTc {qt}/{qtc} ms.")
_AXIS = {
    "normal": ("The QRS axis is normal at {axis} degrees.",
               "The frontal QRS axis is {axis} degrees, within normal limits.",
               "QRS axis {axis} degrees, which is normal."),
    LAD: ("The QRS axis is {axis} degrees with a positive QRS in I and negative QRS in II and aVF, indicating left axis deviation.",
          "A QRS axis of {axis} degrees, positive in I and negative in II and aVF, is a left axis deviation."),
    RAD: ("The QRS axis is {axis} degrees with a negative QRS in I and a positive QRS in aVF, indicating right axis deviation.",
          "A QRS axis of {axis} degrees, negative in I and positive in aVF, is a right axis deviation."),
}
_FINDINGS = {
    AVB1: ("The PR interval is prolonged at {pr} ms with every P wave conducted, indicating first-degree AV block.",
           "A constant PR interval of {pr} ms, above 200 ms, supports a first-degree AV block."),
    RBBB: ("An rsR' pattern in V1 with a broad S wave in I and V6 and QRS {qrs} ms supports a right bundle branch block.",
           "QRS {qrs} ms with an rsR' complex in V1 and a wide terminal S wave in I and V6 indicates right bundle branch block."),
    LBBB: ("A broad notched R wave in I, aVL and V6, a deep QS complex in V1 and QRS {qrs} ms support a left bundle branch block.",
           "QRS {qrs} ms with a QS complex in V1 and a broad notched R wave in I, aVL and V6 indicates left bundle branch block."),
    LVH: ("Tall R waves in V5 and V6 with a deep S wave in V1 give a Sokolow-Lyon voltage of {sl} mV, indicating left ventricular hypertrophy.",
          "S in V1 plus R in V5 or V6 is {sl} mV, above 3.5 mV, which supports left ventricular hypertrophy."),
    INF_STE: ("ST segments are elevated by {st} mV in II, III and aVF with reciprocal ST depression in aVL, indicating inferior ST elevation.",
              "ST elevation of {st} mV in II, III and aVF with reciprocal depression in aVL indicates inferior ST elevation."),
    ANT_STE: ("ST segments are elevated by {st} mV in V1 to V4, indicating anterior ST elevation.",
              "ST elevation of {st} mV across V1 to V4 indicates anterior ST elevation."),
}
_NARROW_QRS = ("QRS complexes are narrow with normal R wave progression.",
               "R wave progression across the precordial leads is normal.")
_ST_NORMAL = ("ST segments are isoelectric.",
              "ST segments are isoelectric and T waves are concordant.",
              "There are no acute ST changes.")
_ST_SECONDARY = ("ST-T changes are secondary to the conduction delay.",
                 "Repolarization changes are secondary to the wide QRS.")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def axis_class(conditions: list[str]) -> str:
    return LAD if LAD in conditions else RAD if RAD in conditions else "normal"


def interpretation_text(truth: EcgTruth, rng: np.random.Generator) -> str:
    """One grounded paragraph: rhythm and rate, intervals, axis, lead findings, then the impression."""
    values = {
        "hr": int(round(truth.hr_bpm)), "qrs": int(round(truth.qrs_ms)), "qt": int(round(truth.qt_ms)),
        "qtc": int(round(truth.qtc_bazett_ms)), "axis": int(round(truth.qrs_axis_deg)),
        "pr": None if truth.pr_ms is None else int(round(truth.pr_ms)),
        "sl": f"{truth.sokolow_lyon_mv:.1f}",
    }
    st_levels = {name: max(truth.st_j60_mv[LEADS.index(lead)] for lead in leads) for name, leads in STE_LEADS.items()}
    return report_text(truth.rhythm, truth.conditions, values, rng, st_levels=st_levels)


def report_text(rhythm: str, conds: list[str], values: dict, rng: np.random.Generator, *,
                st_levels: dict | None = None, narrow_sentence: bool = True, st_sentence: bool = True) -> str:
    """The corpus's one language, from a rhythm, conditions and the values cited ({hr, pr, qrs, qt, qtc, axis, sl}):
    the simulator's truth here, a real record's labels and our measurements in `real_corpus`. A sinus record
    without a PR states its intervals as atrial fibrillation's do; `narrow_sentence` / `st_sentence` False leave
    out the claims that the values cited cannot back (a real record's QRS shape and ST segments)."""
    sentences = [_pick(rng, _RHYTHM[rhythm]),
                 _pick(rng, _INTERVALS_AF if rhythm in (AF, AFL) or values.get("pr") is None else _INTERVALS),
                 _pick(rng, _AXIS[axis_class(conds)])]
    for name in (AVB1, RBBB, LBBB, LVH):
        if name in conds:
            sentences.append(_pick(rng, _FINDINGS[name]))
    if narrow_sentence and (len(conds) == 1 or (len(conds) == 2 and axis_class(conds) != "normal")):
        sentences.append(_pick(rng, _NARROW_QRS))   # short records: keep the length even
    elevated = [name for name in (INF_STE, ANT_STE) if name in conds]
    for name in elevated:
        sentences.append(_pick(rng, _FINDINGS[name]).replace("{st}", f"{(st_levels or {})[name]:.1f}"))
    if st_sentence and not elevated and len(conds) < 3:   # long records skip it to stay within ~90 words
        sentences.append(_pick(rng, _ST_SECONDARY if {RBBB, LBBB} & set(conds) else _ST_NORMAL))
    sentences.append(f"Impression: {', '.join(c for c in (AFL,) + CONDITIONS if c in conds)}.")
    return " ".join(s.format(**values) for s in sentences)


def record_rng(seed: int, index: int) -> np.random.Generator:
    """Record `index`'s own generator: independent of how the records are split over processes."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def record_id(index: int) -> str:
    return f"syn{index:06d}"


def make_record(i: int, rng: np.random.Generator) -> tuple[np.ndarray, EcgTruth, dict]:
    """Simulate record i and its conversation; signal (12, 5000) float32 mV."""
    signal, truth = simulate_ecg(rng)
    text = interpretation_text(truth, rng)
    if rng.random() < DEFAULT_QUESTION_SHARE:
        question = DEFAULT_QUESTION
    else:
        question = QUESTIONS[1 + int(rng.integers(len(QUESTIONS) - 1))]
    rid = record_id(i)
    record = {
        "id": rid,
        "ecg": f"ecg/{rid}",
        "image": f"images/{rid}.png",
        "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
                          {"from": "gpt", "value": text}],
        "machine_measurements": truth.to_dict(),
    }
    return signal, truth, record


def write_wfdb(signal: np.ndarray, name: str, ecg_dir: Path) -> None:
    """(12, N) mV -> <ecg_dir>/<name>.hea/.dat: format 16, gain 1000/mV (1 uV per unit), baseline 0.

    Writes the same bytes as `wfdb.wrsamp(name, fs=500, units=['mV']*12, sig_name=LEADS,
    p_signal=signal.T, fmt=['16']*12, adc_gain=[1000]*12, baseline=[0]*12)` (tests check this), at a
    fraction of its cost: wrsamp spends ~30 ms per record in pandas field lookups, which would
    dominate corpus generation.
    """
    digital = np.round(signal.T.astype(np.float64) * ADC_GAIN)            # (N, 12), wfdb's adc rounding
    if np.abs(digital).max(initial=0) > 32767:
        raise ValueError(f"{name}: signal exceeds +-32.767 mV, the format 16 range at 1 uV per unit")
    digital = digital.astype("<i2")
    checksums = digital.astype(np.int64).sum(axis=0) % 65536
    lines = [f"{name} {len(LEADS)} {ECG_FS} {digital.shape[0]}"]
    lines += [f"{name}.dat 16 {ADC_GAIN}(0)/mV 16 0 {int(digital[0, k])} {int(checksums[k])} 0 {lead}"
              for k, lead in enumerate(LEADS)]
    (ecg_dir / f"{name}.hea").write_text("\n".join(lines) + "\n")
    (ecg_dir / f"{name}.dat").write_bytes(digital.tobytes())


def _write_one(job: tuple[Path, int, int, bool]) -> dict:
    out_dir, seed, index, images = job
    signal, _, record = make_record(index, record_rng(seed, index))
    write_wfdb(signal, record["id"], out_dir / "ecg")
    if images:
        from gem_runtime.render import render_ecg_image
        render_ecg_image(signal, fs=ECG_FS).save(out_dir / record["image"])
    return record


def read_records(data_dir: Path, limit: int | None = None) -> list[dict]:
    """records.json of a corpus folder (ECG-Grounding format), the first `limit` of them."""
    path = Path(data_dir) / "records.json"
    if not path.is_file():
        raise GemEdgeError(f"{path}: not found; make a corpus with `gem-train data --out {data_dir}`")
    try:
        records = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise GemEdgeError(f"{path}: not a records.json ({' '.join(str(e).split())})") from None
    if not isinstance(records, list):
        raise GemEdgeError(f"{path}: expected a list of records, got {type(records).__name__}")
    return records[:limit]


def write_corpus(out_dir, n: int, seed: int, *, images: bool = True, progress: bool = True,
                 workers: int = 1) -> Path:
    """Write n records under out_dir (ecg/, images/, records.json, corpus.txt); returns records.json.

    The same (n, seed) gives byte-identical records.json and corpus.txt for any `workers`.
    """
    if n < 1:
        raise ValueError(f"write_corpus: n must be >= 1, got {n}")
    out_dir = Path(out_dir)
    (out_dir / "ecg").mkdir(parents=True, exist_ok=True)
    if images:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, seed, i, images) for i in range(n)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="corpus", unit="rec")
    records = []
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_write_one, jobs, chunksize=16) if pool else map(_write_one, jobs)
        for record in results:
            records.append(record)
            if bar is not None:
                bar.update(1)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()

    records_path = out_dir / "records.json"
    records_path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    lines = []
    for record in records:
        lines.extend(turn["value"].replace(IMAGE_TOKEN + "\n", "") for turn in record["conversations"])
    (out_dir / "corpus.txt").write_text("\n".join(lines) + "\n")
    return records_path
