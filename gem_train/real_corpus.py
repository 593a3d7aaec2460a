"""Real labelled 12-lead records as a training corpus in the simulator corpus's format (records.json, ecg/, images/,
corpus.txt), the report written from the record's labels and our own measurements with the simulator's sentences
(`corpus.report_text`), so the model learns one language; and the deterministic split that keeps held-out records
out of it.

The split (`split_of`): LUDB record N trains when N % 4 != 3; a CinC record (JS2xxxx, Axxxx) trains when the number
in its name is even. The rest are held out (`write_heldout` links them into folders for `gem-train eval --real`).

What a report says, per augmented copy of a training record:
- the rhythm: the label's (normal sinus rhythm, sinus bradycardia, sinus tachycardia, atrial fibrillation); a sinus
  rhythm labelled without its rate class (CPSC's non-AF records, LUDB's sinus arrhythmia) gets the class of the
  measured rate (< 60 bradycardia, > 100 tachycardia); atrial flutter has the corpus's flutter sentences (the
  simulator draws none and the shared training half labels none: made flutters, `made_copies_of`); other rhythms
  have no sentence in the simulator's language: those records are left out;
- rate, PR, QRS, QT/QTc and QRS axis: `gem_runtime.measure_ecg` on that copy's preprocessed signal (no PR: the
  intervals sentence without it); left axis / right axis deviation from that measured axis (< -30, > 90 degrees);
- first-degree AV block, right and left bundle branch block where labelled and the measurement backs the sentence
  (PR > 200 ms; QRS >= 120 ms), else the copy is left out, as is a copy whose measured PR is above 200 ms where the
  source excludes the block (in the simulator's language such a PR is one); incomplete blocks, IVCD, hypertrophy and ST changes have
  no measured value to cite here (LUDB's amplitudes are rescaled), so they are not named, and the record's text
  makes no QRS-shape or ST claim.
Augmentation: each copy is a different 10 s window of a longer record or a circular time shift (up to 1 s) of a
10 s one, with a global amplitude scale (0.75-1.3), per-lead gains (0.95-1.05), baseline wander and white noise;
copy 0 is the record as recorded. Copy k of a record draws from its own generator (seed, record, k).
With `stretch` (lo, hi), each copy but the first also plays f x 10 s of the record in 10 s, f drawn from [lo, hi]; a
10 s record that f above 1 outruns is first continued with its own beats (`continue_with_beats`): the rate moves by f, so the copies of one record no longer
share one rate the model can learn by heart, and a sinus rhythm's class (bradycardia, normal, tachycardia) is the
one its measured rate gives (< 60, > 100 bpm), as in the simulator's language. Its intervals move by 1/f too, which
for f within 15% stays inside what one person's ECG shows from rest to exercise. Without the continuation (step
2h's corpus) f stayed at or below 1 on LUDB's 10 s records, and the model learnt to lean slow.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zlib
from pathlib import Path

import numpy as np

from gem_runtime.constants import DEFAULT_QUESTION, ECG_FS, IMAGE_TOKEN, LEADS
from gem_runtime.errors import GemEdgeError

from .corpus import AFL as SIM_AFL, DEFAULT_QUESTION_SHARE, QUESTIONS, report_text, write_wfdb
from .real_labels import AF, AFL, AVB1, LBBB, NSR, RBBB, SB, SR, STACH, RecordLabels, labelled_headers, read_labels
from .simulate import AF as SIM_AF, AVB1 as SIM_AVB1, LAD, LBBB as SIM_LBBB, NSR as SIM_NSR, RAD
from .simulate import RBBB as SIM_RBBB, SB as SIM_SB, STACH as SIM_STACH

RHYTHM_NAMES = {NSR: SIM_NSR, SB: SIM_SB, STACH: SIM_STACH, AF: SIM_AF, AFL: SIM_AFL}
CONDITION_NAMES = {AVB1: SIM_AVB1, RBBB: SIM_RBBB, LBBB: SIM_LBBB}
TRAIN, HELDOUT = "train", "heldout"
DATA_SUFFIXES = (".dat", ".mat")


def split_of(labels: RecordLabels) -> str:
    """'train' or 'heldout', from the record's name alone (LUDB: N % 4 != 3 trains; CinC: an even number trains)."""
    digits = "".join(ch for ch in labels.record if ch.isdigit())
    if not digits:
        raise GemEdgeError(f"{labels.record}: no number in the record's name to split by")
    n = int(digits)
    if labels.source == "ludb":
        return TRAIN if n % 4 != 3 else HELDOUT
    return TRAIN if n % 2 == 0 else HELDOUT


def split_headers(folders: list[Path]) -> dict[str, list[Path]]:
    """The labelled headers of `folders` by split, in labelled_headers' order."""
    out: dict[str, list[Path]] = {TRAIN: [], HELDOUT: []}
    for folder in folders:
        for h in labelled_headers(Path(folder)):
            out[split_of(read_labels(h))].append(h)
    return out


def write_heldout(folders: list[Path], out_dir: Path) -> list[Path]:
    """Link each held-out record (header and signal file) into out_dir/<folder name>/: the folders to pass to
    `gem-train eval --real`. Returns those folders."""
    made = []
    for folder in folders:
        folder = Path(folder).resolve()
        dest = Path(out_dir) / folder.name
        dest.mkdir(parents=True, exist_ok=True)
        for h in split_headers([folder])[HELDOUT]:
            for f in [h] + [h.with_suffix(s) for s in DATA_SUFFIXES if h.with_suffix(s).exists()]:
                link = dest / f.name
                if not link.exists():
                    os.symlink(f, link)
        made.append(dest)
    return made


def copy_rng(seed: int, record: str, copy: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(record.encode()), copy]))


JOIN_RR_FRACTION = 0.65     # where two beats are joined: 65% of the RR after an R peak, in the T-P segment
JOIN_FADE_S = 0.04          # crossfade over the join, so a baseline step between the two beats leaves no edge


def continue_with_beats(signal: np.ndarray, fs: float, n_needed: int) -> np.ndarray | None:
    """(12, n) -> (12, >= n_needed): the record continued past its end by its own beats from the start, joined at
    the same phase of two beats (late in the T-P segment), so the rhythm runs on as recorded; None when fewer than
    four R peaks are found."""
    from gem_runtime.measure.detection import detect_r_peaks

    peaks = detect_r_peaks(signal, fs)
    if peaks.size < 4:
        return None
    fade = int(JOIN_FADE_S * fs)
    out = signal
    while out.shape[1] < n_needed:
        rr = np.diff(peaks)
        # the tail: cut in the last complete RR; the head: resume at the same phase of the first RR
        j = peaks.size - 2
        cut_tail = int(peaks[j] + JOIN_RR_FRACTION * rr[j])
        cut_head = int(peaks[0] + JOIN_RR_FRACTION * rr[0])
        if cut_tail - fade < 0 or cut_head + fade >= signal.shape[1] or cut_tail <= cut_head:
            return None
        w = np.linspace(0.0, 1.0, 2 * fade)[None, :]
        seam = (1 - w) * out[:, cut_tail - fade:cut_tail + fade] + w * signal[:, cut_head - fade:cut_head + fade]
        out = np.concatenate([out[:, :cut_tail - fade], seam, signal[:, cut_head + fade:]], axis=1)
        peaks = np.concatenate([peaks[:j + 1], peaks[1:] + (cut_tail - cut_head)])
    return out


def augment(signal: np.ndarray, fs: float, copy: int, n_copies: int, rng: np.random.Generator,
            stretch: tuple[float, float] | None = None) -> tuple[np.ndarray, float]:
    """(12, N) mV at fs -> one (12, 5000) mV copy at 500 Hz and its rate factor f (see the module's docstring);
    copy 0 is the first 10 s as preprocessing takes it (f 1)."""
    from gem_runtime.preprocess import to_gem_array

    n = signal.shape[1]
    f = 1.0
    if stretch is not None and copy > 0:
        f = float(rng.uniform(*stretch))
        if n < 10 * fs * f:
            longer = continue_with_beats(signal, fs, int(np.ceil(10 * fs * f)))
            if longer is None:
                f = n / (10 * fs)
            else:
                signal, n = longer, longer.shape[1]
    window = int(round(10 * fs * f))
    start = 0
    if n > window and copy > 0:               # a longer record: copies spread over its windows
        start = int(round((n - window) * copy / max(1, n_copies - 1)))
    x, _ = to_gem_array(signal[:, start:start + window], fs * f)    # f x 10 s of the record played in 10 s
    if copy == 0:
        return x, f
    if n <= window:
        x = np.roll(x, int(rng.integers(-ECG_FS, ECG_FS + 1)), axis=1)
    return jitter(x, rng), f


def jitter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A global amplitude scale (0.75-1.3), per-lead gains (0.95-1.05), baseline wander and white noise."""
    x = x * rng.uniform(0.75, 1.3) * rng.uniform(0.95, 1.05, size=(x.shape[0], 1))
    t = np.arange(x.shape[1]) / ECG_FS
    wander = rng.uniform(0.0, 0.15) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    x = x + wander[None, :] + rng.normal(0.0, rng.uniform(0.0, 0.02), size=x.shape)
    return x.astype(np.float32)


def report_for(labels: RecordLabels, x: np.ndarray, rng: np.random.Generator,
               rate_class: bool = False) -> tuple[str | None, dict]:
    """(text, machine_measurements) for one copy, or (None, {"reason": ...}) when the copy cannot be written in
    the simulator's language with values that back it. rate_class: a sinus rhythm's class from the measured rate
    whatever the label's (a stretched copy's rate is not the recorded one)."""
    from gem_runtime.measure import measure_ecg

    m = measure_ecg(x, ECG_FS)
    if labels.rhythm not in RHYTHM_NAMES and labels.rhythm != SR:
        return None, {"reason": f"rhythm {labels.rhythm}: no sentence for it"}
    if m.hr_bpm is None or m.qrs_ms is None or m.qt_ms is None or m.qtc_bazett_ms is None or m.qrs_axis_deg is None:
        return None, {"reason": "rate, QRS, QT/QTc or axis not measured"}
    rhythm = labels.rhythm
    if rhythm == SR or (rate_class and rhythm in (NSR, SB, STACH)):
        rhythm = SB if m.hr_bpm < 60 else STACH if m.hr_bpm > 100 else NSR
    rhythm = RHYTHM_NAMES[rhythm]
    pr = None if rhythm in (SIM_AF, SIM_AFL) or m.pr_ms is None else int(round(m.pr_ms))
    if pr is not None and pr > 200 and AVB1 in labels.absent:   # the simulator's language: PR > 200 is a block
        return None, {"reason": f"PR measured {pr} ms, first-degree AV block excluded by the labels"}
    conds = [rhythm]
    for finding, name in CONDITION_NAMES.items():
        if finding not in labels.present:
            continue
        if finding == AVB1 and (pr is None or pr <= 200):
            return None, {"reason": f"first-degree AV block labelled, PR measured {pr}"}
        if finding in (RBBB, LBBB) and m.qrs_ms < 120:
            return None, {"reason": f"{name} labelled, QRS measured {m.qrs_ms:.0f} ms"}
        conds.append(name)
    axis = int(round(m.qrs_axis_deg))
    if axis < -30:
        conds.append(LAD)
    elif axis > 90:
        conds.append(RAD)
    values = {"hr": int(round(m.hr_bpm)), "pr": pr, "qrs": int(round(m.qrs_ms)), "qt": int(round(m.qt_ms)),
              "qtc": int(round(m.qtc_bazett_ms)), "axis": axis, "sl": ""}
    text = report_text(rhythm, conds, values, rng, narrow_sentence=False,
                       st_sentence=bool({SIM_RBBB, SIM_LBBB} & set(conds)))
    return text, {"conditions": conds, "rhythm": rhythm, "hr_bpm": values["hr"], "pr_ms": pr,
                  "qrs_ms": values["qrs"], "qt_ms": values["qt"], "qtc_bazett_ms": values["qtc"],
                  "qrs_axis_deg": axis, "source": labels.source, "record": labels.record,
                  "labels": list(labels.labels)}


MADE_RHYTHMS = {"af": (AF, "atrial fibrillation"), "flutter": (AFL, "atrial flutter")}


def made_copies_of(labels: RecordLabels, x: np.ndarray, seed: int, n: int, kind: str):
    """(copy id, signal, labels) of up to n rhythms of `kind` made from a sinus record's own beats ("af": atrial
    fibrillation, gem_train.real_af; "flutter": typical atrial flutter, gem_train.real_flutter, its conduction
    drawn), each jittered as a copy is; none from a record that is not sinus, and none where our measurement
    contradicts the rhythm's statement (the report must be one it does not contradict)."""
    from gem_runtime.diagnosis import CONTRADICTED, check_diagnoses
    from gem_runtime.measure import measure_ecg

    from .real_af import af_from_beats
    from .real_flutter import flutter_from_beats

    if labels.rhythm not in (NSR, SB, STACH, SR):
        return
    rhythm, statement = MADE_RHYTHMS[kind]
    make = {"af": af_from_beats, "flutter": flutter_from_beats}[kind]
    made_labels = dataclasses.replace(labels, rhythm=rhythm, present=labels.present - {AVB1})
    for k in range(n):
        rng = copy_rng(seed, f"{labels.record}-{kind}", k)
        y = make(x, rng)
        if y is None:
            continue
        y = jitter(y, rng)
        [verdict] = check_diagnoses(statement, measure_ecg(y, ECG_FS))
        if verdict.verdict != CONTRADICTED:
            yield f"{kind}{k}", y, made_labels, rng


def write_real_corpus(folders: list[Path], out_dir: Path, copies: int = 8, seed: int = 0, images: bool = True,
                      stretch: tuple[float, float] | None = None, log=None, af_copies: int = 0,
                      flutter_copies: int = 0) -> dict:
    """The training split of `folders` as a corpus under out_dir (records.json, ecg/, images/, corpus.txt, and
    split.json: which records trained, which are held out, which copies were left out and why). af_copies: per
    sinus record, that many atrial fibrillations made from its beats (`made_copies_of`); flutter_copies: that many
    atrial flutters."""
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_runtime.render import render_ecg_image

    out_dir = Path(out_dir)
    (out_dir / "ecg").mkdir(parents=True, exist_ok=True)
    if images:
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
    split = split_headers(folders)
    records, left_out, trained = [], [], []
    for h in split[TRAIN]:
        labels = read_labels(h)
        try:
            ecg = read_ecg(h)
            preprocess_ecg(ecg)                                   # GEM's leads all there
        except GemEdgeError as e:
            left_out.append({"record": labels.record, "copy": None, "reason": str(e)})
            continue
        wrote = 0
        signal = ecg.signal[[ecg.leads.index(lead) for lead in LEADS]]
        made = [(k, *augment(signal, ecg.fs, k, copies, rng, stretch), labels, rng)
                for k, rng in ((k, copy_rng(seed, labels.record, k)) for k in range(copies))]
        x0 = made[0][1]
        for kind, n in (("af", af_copies), ("flutter", flutter_copies)):
            made += [(k, x, 1.0, kind_labels, rng)
                     for k, x, kind_labels, rng in made_copies_of(labels, x0, seed, n, kind)]
        for k, x, f, copy_labels, rng in made:
            text, mm = report_for(copy_labels, x, rng, rate_class=f != 1.0)
            if text is None:
                left_out.append({"record": labels.record, "copy": k, **mm})
                continue
            rid = f"real-{labels.source}-{labels.record}-{k}"
            question = DEFAULT_QUESTION if rng.random() < DEFAULT_QUESTION_SHARE else \
                QUESTIONS[1 + int(rng.integers(len(QUESTIONS) - 1))]
            write_wfdb(x, rid, out_dir / "ecg")
            if images:
                render_ecg_image(x, fs=ECG_FS).save(out_dir / "images" / f"{rid}.png")
            records.append({"id": rid, "ecg": f"ecg/{rid}", "image": f"images/{rid}.png",
                            "conversations": [{"from": "human", "value": f"{IMAGE_TOKEN}\n{question}"},
                                              {"from": "gpt", "value": text}],
                            "machine_measurements": {**mm, "rate_factor": round(f, 4)}})
            wrote += 1
        if wrote:
            trained.append(labels.record)
        if log:
            log(f"{labels.source} {labels.record}: {wrote}/{len(made)} copies")
    if not records:
        raise GemEdgeError(f"{', '.join(map(str, folders))}: no training record could be written")
    (out_dir / "records.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    lines = [t["value"].replace(IMAGE_TOKEN + "\n", "") for r in records for t in r["conversations"]]
    (out_dir / "corpus.txt").write_text("\n".join(lines) + "\n")
    summary = {"rule": "LUDB N trains when N % 4 != 3; CinC trains when the number in its name is even",
               "train_records": trained, "heldout_records": [h.stem for h in split[HELDOUT]],
               "examples": len(records), "copies": copies, "seed": seed, "stretch": stretch, "af_copies": af_copies,
               "flutter_copies": flutter_copies,
               "left_out": left_out}
    (out_dir / "split.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
