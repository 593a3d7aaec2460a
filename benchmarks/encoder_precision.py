"""int8 vs fp32 CPU encoders, side by side in one process: stage times (interleaved runs on one ECG) and whether
the LLM's greedy text changes (the real ECGs at hand and N synthetic ones).

    python -m benchmarks.encoder_precision --bundle B [--quant q4_k_m] [--runs 3] [--synthetic 20] [--out DIR]

The bundle needs int8 encoders that passed their gate (`gem-export int8`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from pydicom.data import get_testdata_file

from gem_runtime import Interpreter

from .batch_bench import make_archive
from .machine import machine_info, machine_line

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STAGES = ("ecg_encoder", "image_encoder", "prefill", "decode", "ttft", "total")


def real_ecgs() -> list[Path]:
    return [Path(get_testdata_file("waveform_ecg.dcm")), SHARED / "vendor" / "philips_129DYPRG.xml",
            SHARED / "physionet" / "s0010_re.hea"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--quant", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--synthetic", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    gems = {p: Interpreter.load(a.bundle, quant=a.quant, threads=a.threads, encoder_precision=p)
            for p in ("fp32", "int8")}
    ecg = real_ecgs()[0]
    times = {p: {s: [] for s in STAGES} for p in gems}
    for _ in range(a.runs + 1):                          # interleaved; the first round is a warm-up
        for p, gem in gems.items():
            t = gem.interpret(ecg, max_new_tokens=a.new_tokens, ignore_eos=True).timings.to_dict()
            for s in STAGES:
                times[p][s].append(t[s])
    med = {p: {s: statistics.median(v[1:]) for s, v in st.items()} for p, st in times.items()}
    with tempfile.TemporaryDirectory() as tmp:
        files = real_ecgs() + sorted(make_archive(Path(tmp), a.synthetic).glob("*.hea"))
        same = [gems["fp32"].interpret(f, max_new_tokens=a.new_tokens).token_ids ==
                gems["int8"].interpret(f, max_new_tokens=a.new_tokens).token_ids for f in files]
    lines = [f"# int8 vs fp32 encoders: {a.bundle}, LLM {gems['fp32'].quant}, {a.threads} threads, "
             f"{a.runs} interleaved runs, {a.new_tokens} new tokens", "", f"Machine: {machine_line(machine_info())}",
             "", "| stage | fp32 median ms | int8 median ms | speed-up |", "|---|---:|---:|---:|"]
    for s in STAGES:
        lines.append(f"| {s} | {med['fp32'][s]:.1f} | {med['int8'][s]:.1f} | {med['fp32'][s] / med['int8'][s]:.2f}x |")
    lines += ["", f"Greedy text identical with int8 encoders: {sum(same[:3])}/3 real ECGs (pydicom's DICOM, the "
              f"Philips XML, PTB s0010), {sum(same[3:])}/{len(same) - 3} synthetic."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.md").write_text(text)
        (a.out / "results.json").write_text(json.dumps({"median_ms": med, "identical": same}, indent=1) + "\n")
    for gem in gems.values():
        gem.close()


if __name__ == "__main__":
    main()
