"""The mutation corpus (tests/mutate.py) read in the suite: for each format, 100 seeded mutants of the real cart
files, read one after another in a child process per format under resource limits (OPENBLAS/OMP on one thread,
4 GB of address space). Every mutant must read (finite samples, JSON without NaN) or be refused with one line,
never a traceback, a hang (> 10 s), more than 1 GB of memory, or anything on stderr.

    python tests/test_mutation_corpus.py     # the table of counts per format (read, refused, bad, ...)
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

MUTATE = Path(__file__).with_name("mutate.py")
sys.path.insert(0, str(MUTATE.parent))
from mutate import FORMATS

SEED = 25
COUNT = 100              # mutants per format
HANG_S = 10.0            # a mutant reading longer than this is a hang
MAX_RSS_MB = 1024        # the child's peak resident memory, imports included
ADDRESS_SPACE = 4 * 2**30


def run_format(fmt: str, workdir: Path, real: Path, count: int = COUNT, seed: int = SEED) -> dict[int, dict]:
    """Every mutant's result line; a mutant the child never finished is a "hang" (killed after HANG_S) or a
    "crash" (the child died), and the child is started again after it."""
    results, start = {}, 0
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "GEM_MUTANT_ADDRESS_SPACE": str(ADDRESS_SPACE)}          # the child limits itself (no preexec_fn)
    while start < count:
        run_start = start
        stderr_path = workdir / f"{fmt}-{start}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([sys.executable, str(MUTATE), fmt, str(seed), str(count), str(start),
                                     str(workdir), str(real)], stdout=subprocess.PIPE, stderr=stderr, env=env,
                                    text=True)
            current, since = None, time.monotonic()
            selector = selectors.DefaultSelector()
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                if not selector.select(timeout=0.5):
                    if current is not None and time.monotonic() - since > HANG_S:
                        proc.kill()
                        results[current["k"]] = {**current, "outcome": "hang", "seconds": HANG_S}
                        start = current["k"] + 1
                        break
                    continue
                line = proc.stdout.readline()
                if not line:                                    # the child ended
                    proc.wait()
                    if current is not None:
                        results[current["k"]] = {**current, "outcome": "crash", "detail": f"exit {proc.returncode}"}
                        start = current["k"] + 1
                    else:
                        start = count
                    break
                item = json.loads(line)
                if "outcome" in item:
                    results[item["k"]], current = item, None
                else:
                    current, since = item, time.monotonic()
            proc.stdout.close()
            selector.close()
        claimed = sum(r.get("stderr", 0) for k, r in results.items() if k >= run_start)
        if stderr_path.stat().st_size > claimed:                # what no single mutant's read claimed
            results[-1 - start] = {"k": -1, "outcome": "stderr", "detail": stderr_path.read_text()[-500:]}
    return results


def problems(results: dict[int, dict]) -> list[str]:
    bad = []
    for k, r in sorted(results.items()):
        if r["outcome"] not in ("read", "refused"):
            bad.append(f"{k} {r.get('what')}: {r['outcome']}: {r.get('detail', '')}")
        elif r["seconds"] > HANG_S or r["rss_mb"] > MAX_RSS_MB or r["stderr"]:
            bad.append(f"{k} {r['what']}: {r['seconds']} s, {r['rss_mb']} MB, {r['stderr']} bytes on stderr")
    return bad


def summary(fmt: str, results: dict[int, dict]) -> str:
    counts = Counter(r["outcome"] for r in results.values())
    slowest = max((r.get("seconds", 0) for r in results.values()), default=0)
    peak = max((r.get("rss_mb", 0) for r in results.values()), default=0)
    return (f"{fmt:10} {len([k for k in results if k >= 0]):4} mutants: {counts['read']:3} read, "
            f"{counts['refused']:3} refused, {counts['traceback']} traceback, {counts['hang']} hang, "
            f"{counts['crash']} crash, {counts['bad']} bad; slowest {slowest:.2f} s, peak {peak} MB")


def run_all(workdir: Path, real: Path, workers: int = 2) -> dict[str, dict[int, dict]]:
    with ThreadPoolExecutor(workers) as pool:
        futures = {fmt: pool.submit(run_format, fmt, workdir, real) for fmt in FORMATS}
        return {fmt: future.result() for fmt, future in futures.items()}


def test_every_mutant_reads_or_is_refused_in_one_line(shared_data, tmp_path):
    pytest.importorskip("ecgdatakit")
    t0 = time.monotonic()
    all_results = run_all(tmp_path, shared_data / "real")
    print(f"\nmutation corpus, seed {SEED}, {time.monotonic() - t0:.0f} s:")
    for fmt, results in all_results.items():
        print(summary(fmt, results))
    failures = {fmt: problems(results) for fmt, results in all_results.items()}
    assert not any(failures.values()), json.dumps({f: p[:5] for f, p in failures.items() if p}, indent=1)
    assert all(len([k for k in r if k >= 0]) == COUNT for r in all_results.values())


if __name__ == "__main__":
    import tempfile
    real_dir = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.monotonic()
        found = run_all(Path(folder), real_dir)
        for name, res in found.items():
            print(summary(name, res))
            for line in problems(res)[:10]:
                print("   ", line)
        print(f"{time.monotonic() - t0:.0f} s")
