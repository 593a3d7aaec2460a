"""gem-bench batch: records/hour of `gem-run batch` on one folder, side by side in one run.

    gem-bench batch --bundle B --records N [--new-tokens 64] [--threads 2] [--out DIR]

The same N synthetic ECGs (WFDB, one simulator seed, every record a different ECG) through:
- local, one at a time: `gem-run batch` (run_local, one warm Interpreter, flash attention off);
- local, --decode-batch NSEQ: NSEQ records' prompts as sequences of one llama.cpp context, one llama_decode of
  one token per unfinished record per step;
- ray: run_ray on a new local Ray, 2 workers x (threads / 2) cores: while one worker decodes, the other reads,
  encodes and prefills (the "prefill of the next record overlapped" the issue asks about);
- one at a time with flash attention on: what `gem-run FILE` runs, for the cost of the batch engine's setting.
For each: wall time (model load and Ray start included), records/hour over it, the steady rate (records after
the first over the time between the first and the last result), and how many records' tokens are identical
to the local engine's. Timing comparisons only hold on a quiet machine: run nothing else meanwhile.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

NSEQ = 4


@dataclass
class EngineRun:
    engine: str
    seconds: float                    # wall time, load and start-up included
    records: int
    steady_records_per_hour: float    # between the first result(s) and the last (_steady)
    identical_to_local: int           # records whose tokens equal the local engine's
    first_divergence: list[int] = field(default_factory=list)   # token index of each record that differs

    @property
    def records_per_hour(self) -> float:
        return self.records * 3600 / self.seconds


def make_archive(folder: Path, n: int, seed: int = 20261202) -> Path:
    """n simulated 12-lead ECGs as WFDB records (the simulator's conditions drawn per record)."""
    from gem_train.corpus import write_wfdb
    from gem_train.simulate.record import simulate_ecg

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        signal, _ = simulate_ecg(rng)
        write_wfdb(signal, f"ecg{i:04d}", folder)
    return folder


def _tokens(out_dir: Path) -> dict[str, list[int]]:
    return {p.relative_to(out_dir).as_posix(): json.loads(p.read_text())["token_ids"]
            for p in sorted(out_dir.rglob("*.json"))}


def _steady(stamps: list[float], together: float = 0.03) -> float:
    """Records/hour from the first result to the last, so that neither model load nor Ray's start counts: the
    records finished after the first ones (those written within `together` s of the first: a decode batch
    ends at once) over the time between."""
    stamps = sorted(stamps)
    later = [s for s in stamps if s > stamps[0] + together] if stamps else []
    return len(later) * 3600 / (stamps[-1] - stamps[0]) if later else 0.0


def _compare(engine: str, seconds: float, tokens: dict[str, list[int]], local: dict[str, list[int]],
             stamps: list[float]) -> EngineRun:
    same, diverge = 0, []
    for rel, ids in local.items():
        other = tokens.get(rel)
        if other == ids:
            same += 1
        else:
            other = other or []
            diverge.append(next((i for i, (a, b) in enumerate(zip(ids, other)) if a != b), min(len(ids), len(other))))
    return EngineRun(engine, round(seconds, 2), len(tokens), round(_steady(stamps), 1), same, diverge)


def run_engines(bundle: Path, archive: Path, work: Path, new_tokens: int, threads: int, log=print) -> list[EngineRun]:
    """Each engine on the same folder, one after the other; tokens compared with the first (local, one at a
    time: the reference the issue names)."""
    from gem_runtime.batch import LocalOptions, walk_records
    from gem_runtime.batch.local import run_local
    from gem_runtime.batch.ray_engine import RayOptions, run_ray

    def options(**kw):
        return LocalOptions(bundle=bundle, threads=threads, max_new_tokens=new_tokens, **kw)

    half = max(1, threads // 2)
    plans = [("local, one at a time", lambda out: run_local(walk_records(archive, out), out, options())),
             (f"local, --decode-batch {NSEQ}",
              lambda out: run_local(walk_records(archive, out), out, options(decode_batch=NSEQ))),
             (f"ray, 2 workers x {half} thread(s)",
              lambda out: run_ray(walk_records(archive, out), out, replace(options(), threads=half),
                                  RayOptions(workers=2)))]
    warm = work / "warm-up"                  # imports, file cache, first sessions: paid before any engine's clock
    warm.mkdir()
    for f in sorted(archive.glob("*"))[:2]:
        (warm / f.name).write_bytes(f.read_bytes())
    run_local(walk_records(warm, work / "warm-up-out"), work / "warm-up-out", options())
    runs, local = [], None
    for k, (name, run) in enumerate(plans):
        out = work / f"engine{k}"
        log(f"[batch] {name}")
        summary = run(out)
        tokens = _tokens(out)
        local = local or tokens
        runs.append(_compare(name, summary.seconds, tokens, local, _mtimes(out)))
        log(f"[batch] {name}: {summary.done} records in {summary.seconds:.1f} s")
    log("[batch] one at a time, flash attention on (gem-run's own setting)")
    seconds, tokens, stamps = _flash_attention_on(bundle, sorted(archive.glob("*.hea")), new_tokens, threads)
    runs.append(_compare("one at a time, flash attention on (gem-run)", seconds, tokens, local, stamps))
    return runs


def _mtimes(out_dir: Path) -> list[float]:
    return [p.stat().st_mtime for p in out_dir.rglob("*.json")]


def _flash_attention_on(bundle: Path, headers: list[Path], new_tokens: int, threads: int
                        ) -> tuple[float, dict[str, list[int]], list[float]]:
    """What `gem-run FILE` does for each record, one warm Interpreter with llama.cpp's own attention choice."""
    from gem_runtime import Interpreter

    t0 = time.perf_counter()
    tokens, stamps = {}, []
    with Interpreter.load(bundle, threads=threads) as gem:
        for h in headers:
            tokens[h.name + ".json"] = list(gem.interpret(h, max_new_tokens=new_tokens).token_ids)
            stamps.append(time.time())
    return time.perf_counter() - t0, tokens, stamps


def markdown(bundle: Path, n: int, new_tokens: int, threads: int, runs: list[EngineRun], machine: str) -> str:
    local = runs[0]
    lines = [f"# gem-bench batch: {bundle}, {n} synthetic ECGs, up to {new_tokens} new tokens, {threads} threads",
             "", f"Machine: {machine}", "",
             "| engine | wall s | records/hour | vs local | steady records/hour | tokens identical to local |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r.engine} | {r.seconds:.1f} | {r.records_per_hour:,.0f} | "
                     f"{r.records_per_hour / local.records_per_hour:.2f}x | {r.steady_records_per_hour:,.0f} | "
                     f"{r.identical_to_local}/{local.records} |")
    for r in runs:
        if r.first_divergence:
            lines.append(f"\n{r.engine}: the records that differ diverge at token "
                         f"{', '.join(map(str, sorted(r.first_divergence)))} (median "
                         f"{statistics.median(r.first_divergence):g}).")
    return "\n".join(lines) + "\n"


def write(bundle: Path, n: int, new_tokens: int, threads: int, runs: list[EngineRun], out: Path) -> Path:
    from .machine import machine_info, machine_line

    out.mkdir(parents=True, exist_ok=True)
    machine = machine_line(machine_info())
    (out / "results.json").write_text(json.dumps(
        {"bundle": str(bundle), "records": n, "new_tokens": new_tokens, "threads": threads, "machine": machine,
         "runs": [{**asdict(r), "records_per_hour": round(r.records_per_hour, 1)} for r in runs]}, indent=1) + "\n")
    path = out / "results.md"
    path.write_text(markdown(bundle, n, new_tokens, threads, runs, machine))
    return path
