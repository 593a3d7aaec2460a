"""The service under load, and follow-up latency.

    gem-bench soak --bundle B [--requests 1000] [--clients 4] [--out DIR]
    gem-bench followup --bundle B [--runs 5] [--out DIR]

soak: a real `gem-run serve` process; `clients` threads send `requests` in all: 10% malformed uploads, 10%
follow-ups on an ECG the same client had interpreted, the rest interpretations of real ECGs (pydicom's DICOM,
the PTB record, the Philips XML). Every answer is counted by status (a 5xx is a bug); the server's RSS after
the first 10% of the requests and at the end, latency percentiles, tokens/s.

followup: time to first token of a follow-up (`Interpreter.ask`: only the new turn is evaluated) against the
first request's (read, render, encode, prefill the ECG), interleaved in one process.
"""
from __future__ import annotations

import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from .machine import machine_info, machine_line

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
QUESTION = "Is the QT interval prolonged?"


def real_ecgs() -> list[Path]:
    from pydicom.data import get_testdata_file

    out = [Path(get_testdata_file("waveform_ecg.dcm"))]
    out += [p for p in (SHARED / "vendor" / "philips_129DYPRG.xml",) if p.exists()]
    return out


def malformed_uploads() -> list[tuple[str, bytes]]:
    dicom = real_ecgs()[0].read_bytes()
    return [("notes.txt", b"I, II, V1\n0.1, 0.2, 0.3\n"), ("cut.dcm", dicom[:3000]), ("empty.dcm", b""),
            ("bomb.xml", b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><restingecgdata>&a;</restingecgdata>'),
            ("scan.dcm", b"\x89PNG\r\n\x1a\n" + bytes(300))]


@dataclass
class SoakResult:
    requests: int
    clients: int
    statuses: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    wall_s: float
    latency_ms: dict[str, float]
    tokens: int
    tokens_per_s: float
    rss_mb_after_first: float
    rss_mb_at_end: float
    rss_growth: float
    server_exit_code: int
    threads: int = 2
    state_mb: int = 64
    machine: str = ""
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(bundle: Path, *args: str, threads: int = 2) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gem_runtime.cli", "serve", "--bundle", str(bundle), "--port",
                             str(port), "--threads", str(threads), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"gem-run serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gem-run serve did not answer in 120 s")


def soak(bundle: Path, requests: int = 1000, clients: int = 4, max_new_tokens: int = 32, seed: int = 0,
         threads: int = 2, state_mb: int = 64, log=print) -> SoakResult:
    """state_mb: the follow-up state budget; small enough that the cache is full within the first tenth of the
    requests, so the RSS growth after it is what leaks, not what the budget allows."""
    ecgs, bad = real_ecgs(), malformed_uploads()
    proc, base = start_server(bundle, "--queue", str(2 * clients), "--state-mb", str(state_mb), threads=threads)
    lock = threading.Lock()
    done, statuses, by_kind, latencies, tokens = [0], Counter(), {}, [], [0]
    rss_first: list[float] = []
    plan = random.Random(seed)
    kinds = [plan.choices(("interpret", "malformed", "followup"), (0.8, 0.1, 0.1))[0] for _ in range(requests)]
    cursor = [0]

    def client(k: int):
        mine: list[str] = []                                      # ecg_ids this client interpreted
        with httpx.Client(base_url=base, timeout=600) as http:
            while True:
                with lock:
                    if cursor[0] >= requests:
                        return
                    i, cursor[0] = cursor[0], cursor[0] + 1
                kind = kinds[i] if kinds[i] != "followup" or mine else "interpret"
                t0 = time.perf_counter()
                if kind == "malformed":
                    name, data = bad[i % len(bad)]
                    r = http.post("/v1/interpret", files={"file": (name, data)}, data={"max_new_tokens": "8"})
                elif kind == "followup":
                    r = http.post(f"/v1/ecgs/{mine[-1]}/ask", json={"question": QUESTION,
                                                                   "max_new_tokens": max_new_tokens})
                else:
                    path = ecgs[i % len(ecgs)]
                    r = http.post("/v1/interpret", files={"file": (path.name, path.read_bytes())},
                                  data={"max_new_tokens": str(max_new_tokens)})
                    if r.status_code == 200:
                        mine.append(r.json()["ecg_id"])
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    statuses[str(r.status_code)] += 1
                    by_kind.setdefault(kind, Counter())[str(r.status_code)] += 1
                    if r.status_code == 200:
                        latencies.append(ms)
                        tokens[0] += r.json().get("new_tokens", 0)
                    done[0] += 1
                    if done[0] == max(1, requests // 10):
                        rss_first.append(rss_mb(proc.pid))
                    if done[0] % max(1, requests // 10) == 0:
                        log(f"[soak] {done[0]}/{requests} {dict(statuses)}")

    t0 = time.perf_counter()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    wall = time.perf_counter() - t0
    rss_end = rss_mb(proc.pid)
    proc.terminate()
    code = proc.wait(timeout=120)
    lat = sorted(latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))  # noqa: E731
    first = rss_first[0] if rss_first else rss_end
    return SoakResult(requests=requests, clients=clients, statuses=dict(statuses),
                      by_kind={k: dict(v) for k, v in by_kind.items()}, wall_s=round(wall, 1),
                      latency_ms={"p50": round(pct(0.5), 1), "p99": round(pct(0.99), 1),
                                  "mean": round(statistics.fmean(lat), 1) if lat else float("nan")},
                      tokens=tokens[0], tokens_per_s=round(tokens[0] / wall, 1), rss_mb_after_first=round(first, 1),
                      rss_mb_at_end=round(rss_end, 1), rss_growth=round(rss_end / first - 1, 4),
                      server_exit_code=code, threads=threads, state_mb=state_mb, machine=machine_line(machine_info()))


@dataclass
class FollowupResult:
    bundle: str
    runs: int
    first_ttft_ms: float                  # medians
    followup_ttft_ms: float
    ratio: float
    first_prompt_positions: int
    followup_prompt_positions: int
    machine: str = ""


def followup(bundle: Path, runs: int = 5, threads: int = 2, max_new_tokens: int = 16, log=print) -> FollowupResult:
    from gem_runtime import Interpreter

    ecg = real_ecgs()[0]
    first, follow = [], []
    with Interpreter.load(bundle, threads=threads, state_bytes=1 << 30) as gem:
        gem.ask(gem.interpret(ecg, max_new_tokens=4), QUESTION, max_new_tokens=2)           # warm-up
        for k in range(runs):
            result = gem.interpret(ecg, max_new_tokens=max_new_tokens)
            answer = gem.ask(result, QUESTION, max_new_tokens=max_new_tokens)
            first.append(result.timings.ttft_ms)
            follow.append(answer.timings.ttft_ms)
            log(f"[followup] run {k + 1}/{runs}: first {first[-1]:.1f} ms, follow-up {follow[-1]:.1f} ms")
    f, g = statistics.median(first), statistics.median(follow)
    return FollowupResult(bundle=str(bundle), runs=runs, first_ttft_ms=round(f, 2), followup_ttft_ms=round(g, 2),
                          ratio=round(g / f, 4), first_prompt_positions=result.prompt_positions,
                          followup_prompt_positions=answer.prompt_positions, machine=machine_line(machine_info()))


def write(result, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    return path
