"""`gem-run --json` on every shared cart file (issue 29's must-show): the model's text and each diagnosis's verdict
against our measurements and the device's, or the one-line refusal. Writes benchmarks/results/cart_diagnoses.json.

    python scripts/cart_diagnoses.py [--bundle DIR] [--shared ../shared/data] [--revise-rhythm --out FILE]

With --revise-rhythm each file runs as `gem-run --revise-rhythm` (the revised text, the model's own and each
revision; benchmarks/results/cart_diagnoses_revised.json).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CART_FOLDERS = ("muse", "philips", "scp", "aecg", "dicom", "cardiosoft", "other")   # real/: every cart file
EXTRA = ("vendor/philips_129DYPRG.xml",)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--revise-rhythm", action="store_true")
    a = ap.parse_args()
    a.out = a.out or str(ROOT / "benchmarks" / "results" /
                         ("cart_diagnoses_revised.json" if a.revise_rhythm else "cart_diagnoses.json"))
    from pydicom.data import get_testdata_file

    shared = Path(a.shared)
    files = [p for d in CART_FOLDERS for p in sorted((shared / "real" / d).iterdir(), key=lambda p: p.name.lower())]
    paths = [(str(p.relative_to(shared)), p) for p in files + [shared / f for f in EXTRA]]
    paths.append(("pydicom/waveform_ecg.dcm", Path(get_testdata_file("waveform_ecg.dcm"))))
    rows = []
    for name, path in paths:
        cmd = [str(Path(sys.executable).parent / "gem-run"), "run", "--json", str(path)]
        if a.bundle:
            cmd[2:2] = ["--bundle", a.bundle]
        if a.revise_rhythm:
            cmd.insert(3, "--revise-rhythm")
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            rows.append({"file": name, "exit": p.returncode, "error": p.stderr.strip().splitlines()[-1]})
        else:
            r = json.loads(p.stdout)
            rows.append({"file": name, "exit": 0, "text": r["text"], "device_statements": r.get("device_statements", []),
                         "diagnoses": r.get("diagnoses", []),
                         **({"model_text": r["model_text"], "revisions": r["revisions"]} if "revisions" in r else {})})
        print(f"{name}: exit {p.returncode}", file=sys.stderr)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
