"""How the flutter-wave rule (gem_runtime.measure.atrial, diagnosis.criteria.FLUTTER_WAVE_*) was set: on the
training half of the shared labelled records only (gem_train.real_corpus.split_of), their real rhythms, the shared
cart files, and flutter made from the sinus records' own beats (gem_train.real_flutter) at each conduction.

    python benchmarks/flutter_waves.py --out benchmarks/results/flutter-waves.json

Prints, per group, how many meet the rule and the verdicts on the statements "atrial flutter", "sinus rhythm" and
"atrial fibrillation" (supported / contradicted / not checkable), and the real records' best repeating wave."""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from gem_runtime.constants import ECG_FS
from gem_runtime.diagnosis import check_diagnoses
from gem_runtime.diagnosis.checks import flutter_waves_found
from gem_runtime.diagnosis.criteria import FLUTTER_WAVE_HALF_CYCLE, FLUTTER_WAVE_PERIODICITY
from gem_runtime.diagnosis.evidence import from_measurements
from gem_runtime.errors import GemEdgeError
from gem_runtime.measure import measure_ecg
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import read_ecg
from gem_train.real_corpus import TRAIN, copy_rng, split_headers
from gem_train.real_flutter import CONDUCTIONS, flutter_from_beats
from gem_train.real_labels import read_labels

STATEMENTS = {"flutter": "atrial flutter", "sinus": "sinus rhythm", "af": "atrial fibrillation"}
SINUS = ("normal_sinus_rhythm", "sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia")
CARTS = ("muse/*.xml", "philips/*.xml", "scp/*", "aecg/*.xml", "dicom/*.dcm", "cardiosoft/*.xml")


def _row(name: str, group: str, meas) -> dict:
    a = meas.atrial_waves
    return {"record": name, "group": group, "hr_bpm": meas.hr_bpm,
            "found": flutter_waves_found(from_measurements(meas)),
            "cycle_ms": getattr(a, "cycle_ms", None), "periodicity": getattr(a, "periodicity", None),
            "half_cycle": getattr(a, "half_cycle", None), "amplitude_mv": getattr(a, "amplitude_mv", None),
            "lead": getattr(a, "lead", None), "n_intervals": getattr(a, "n_intervals", 0),
            "baseline_mv": getattr(a, "baseline_mv", None), "n_baseline": getattr(a, "n_baseline", 0),
            "verdicts": {k: _verdict(text, meas) for k, text in STATEMENTS.items()}}


def _verdict(text: str, meas) -> str:
    return check_diagnoses(text, meas, None)[0].verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--copies", type=int, default=2, help="made flutters per sinus record and conduction")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    real = args.shared / "real"
    rows = []
    for h in split_headers([real / "labelled", real / "ludb"])[TRAIN]:
        labels = read_labels(h)
        try:
            x, _ = preprocess_ecg(read_ecg(h))
        except GemEdgeError:
            continue
        rows.append(_row(h.stem, f"real {labels.rhythm}", measure_ecg(x, ECG_FS)))
        if labels.rhythm in SINUS:
            for k, conduction in enumerate(CONDUCTIONS):
                for j in range(args.copies):
                    y = flutter_from_beats(x, copy_rng(7 + j, h.stem + "-afl", k), conduction)
                    if y is not None:
                        rows.append(_row(h.stem, f"made flutter {conduction}", measure_ecg(y, ECG_FS)))
    for pattern in CARTS:
        for f in sorted(real.glob(pattern)):
            try:
                x, _ = preprocess_ecg(read_ecg(f))
            except GemEdgeError:
                continue
            rows.append(_row(f.name, "cart file", measure_ecg(x, ECG_FS)))
    found, total = Counter(r["group"] for r in rows if r["found"]), Counter(r["group"] for r in rows)
    summary = {g: f"{found[g]}/{total[g]}" for g in sorted(total)}
    verdicts = {g: {k: dict(Counter(r["verdicts"][k] for r in rows if r["group"] == g)) for k in STATEMENTS}
                for g in sorted(total)}
    for g, v in summary.items():
        print(f"{g:32s} flutter waves found {v}; " + "; ".join(f"{k}: {verdicts[g][k]}" for k in STATEMENTS))
    best = max((r for r in rows if not r["group"].startswith("made") and r["periodicity"] is not None),
               key=lambda r: r["periodicity"], default=None)
    if best is not None:
        print(f"highest periodicity on a real record: {best['periodicity']:.2f} ({best['record']}, {best['group']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rule": {"periodicity": FLUTTER_WAVE_PERIODICITY,
                                             "half_cycle": FLUTTER_WAVE_HALF_CYCLE},
                                    "summary": summary, "verdicts": verdicts, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
