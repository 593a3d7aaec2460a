"""`gem-run --json` on every shared cart file (issue 29's must-show): the model's text and each diagnosis's verdict
against our measurements and the device's, or the one-line refusal. Writes benchmarks/results/cart_diagnoses.json.

    python scripts/cart_diagnoses.py [--bundle DIR] [--shared ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["real/muse/example1.xml", "real/muse/example2.xml", "real/muse/muse-sinus.xml", "real/philips/129DYNRG.xml",
         "real/philips/129ECORG_leads_off.xml", "real/philips/2020-5-18_15-48-11.xml",
         "real/philips/3191723_ZZDEMOPTONLY_1-04_orig.xml", "real/scp/ECG_20060620_112352_197001138994.SCP",
         "real/scp/ECG_20070321_110542_191010101010.SCP", "real/scp/ecgsoft_demo.scp",
         "real/scp/healforce_62_nonstandard.SCP", "real/aecg/hl7_example_aecg.xml", "real/dicom/ge_mv360.dcm",
         "real/cardiosoft/cardiosoft_example.xml", "real/other/contec_native.ECG",
         "real/other/cortrium_holter_3lead.edf", "vendor/philips_129DYPRG.xml"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cart_diagnoses.json"))
    a = ap.parse_args()
    from pydicom.data import get_testdata_file

    paths = [(f, Path(a.shared) / f) for f in FILES] + [("pydicom/waveform_ecg.dcm",
                                                         Path(get_testdata_file("waveform_ecg.dcm")))]
    rows = []
    for name, path in paths:
        cmd = [str(Path(sys.executable).parent / "gem-run"), "run", "--json", str(path)]
        if a.bundle:
            cmd[2:2] = ["--bundle", a.bundle]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            rows.append({"file": name, "exit": p.returncode, "error": p.stderr.strip().splitlines()[-1]})
        else:
            r = json.loads(p.stdout)
            rows.append({"file": name, "exit": 0, "text": r["text"], "device_statements": r.get("device_statements", []),
                         "diagnoses": r.get("diagnoses", [])})
        print(f"{name}: exit {p.returncode}", file=sys.stderr)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
