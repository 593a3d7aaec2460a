"""gem-bench soak: a real `gem-run serve` under a bounded mix of ordinary, careless and hostile requests.

    gem-bench soak [--bundle bundles/demo] [--requests 300] [--clients 4] [--seconds 120] [--md benchmarks/soak.md]

The server runs with a token, --max-bytes 2 MB and --read-timeout 2 s. CLIENTS threads send REQUESTS in all
(or as many as fit in SECONDS), each drawn from KINDS with its weight: interpretations, measurements and
follow-ups of real ECGs (pydicom's el250 DICOM, the Philips XML where shared/ has it), and the clients of issue
26: uploads named "..", or 4,000 characters long; a chunked upload that never ends; a 300 kB follow-up body; a
20,000-character question (422; the conversation must answer the next question); a foreign Host; a post from
another origin; a wrong token, a lowercase "bearer"; max_new_tokens true; an unknown ECG; a body sent too
slowly; malformed ECGs. Every answer is counted by kind and status; each kind's statuses are checked against
the one it must get, and any 5xx is a failure. At the end the server gets SIGTERM and must exit 0.
"""
from __future__ import annotations

import json
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from .machine import cpu_info
from .serve_bench import free_port, malformed_uploads, real_ecgs, rss_mb

TOKEN = "soak-token"
MAX_BYTES = 2_000_000
READ_TIMEOUT_S = 2
# kind: (weight, the statuses it may get)
KINDS = {
    "interpret": (20, {200}), "measure": (14, {200}), "followup": (10, {200}), "health": (6, {200}),
    "metrics": (3, {200}), "malformed": (8, {422}), "name_dotdot": (4, {200}), "name_long": (4, {200}),
    "chunked_flood": (3, {413}), "big_json": (3, {413}), "long_question": (4, {422}), "after_long": (0, {200}),
    "foreign_host": (4, {421}), "cross_origin": (4, {403}), "wrong_token": (4, {401}), "lower_bearer": (3, {200}),
    "bool_tokens": (3, {400}), "unknown_ecg": (3, {404}), "slow_body": (1, {408}),
}
NEEDS_ECG = ("followup", "long_question", "big_json", "bool_tokens")


@dataclass
class SoakResult:
    requests: int
    clients: int
    wall_s: float
    statuses: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    unexpected: list[str]                     # "kind: status" answers a kind must not get
    server_exit_code: int
    rss_mb_start: float
    rss_mb_end: float
    cpu: str = ""
    bundle: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected and self.server_exit_code == 0 and not any(s.startswith("5") for s in self.statuses)


def _start(bundle: Path, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gem_runtime.cli", "serve", "--bundle", str(bundle), "--port",
                             str(port), "--threads", str(threads), "--token", TOKEN, "--queue", "16",
                             "--max-bytes", str(MAX_BYTES), "--read-timeout", str(READ_TIMEOUT_S), "--state-mb", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gem-run serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", headers=_auth(), timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gem-run serve did not answer in 180 s")


def _auth(scheme: str = "Bearer", token: str = TOKEN) -> dict:
    return {"Authorization": f"{scheme} {token}"}


def _raw(port: int, head: str, body: bytes, then, wait_s: float = 30) -> int:
    """A request by hand: `head` (no blank line), the first `body` bytes, then `then(sock)` until the server
    answers; its status."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s], [], 0.5)
            if readable:
                answer = s.recv(4096)
                return int(answer.split(b" ", 2)[1]) if answer else 0
            if writable:
                try:
                    then(s)
                except OSError:                 # the server closed its side after answering: read the answer
                    time.sleep(0.1)
    return 0


class Client:
    """One client thread's requests; `ecg_ids` it interpreted, for its follow-ups."""

    def __init__(self, port: int, ecgs: list[tuple[str, bytes]], bad: list[tuple[str, bytes]]):
        self.port, self.ecgs, self.bad = port, ecgs, bad
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=300, headers=_auth())
        self.ecg_ids: list[str] = []

    def kind_for(self, kind: str) -> str:
        """The kind as drawn, or an interpretation where it needs an ECG this client has not interpreted yet."""
        return "interpret" if kind in NEEDS_ECG and not self.ecg_ids else kind

    def send(self, kind: str, i: int) -> int:
        name, data = self.ecgs[i % len(self.ecgs)]
        if kind == "interpret":
            r = self.http.post("/v1/interpret", files={"file": (name, data)}, data={"max_new_tokens": "8"})
            if r.status_code == 200:
                self.ecg_ids.append(r.json()["ecg_id"])
            return r.status_code
        if kind in ("measure", "name_dotdot", "name_long"):
            upload = {"measure": name, "name_dotdot": "..", "name_long": "x" * 4000 + ".dcm"}[kind]
            return self.http.post("/v1/measure", files={"file": (upload, data)}).status_code
        if kind == "followup":
            return self._ask(self.ecg_ids[-1], {"question": "Is the rate normal?", "max_new_tokens": 8})
        if kind == "long_question":
            return self._ask(self.ecg_ids[-1], {"question": "why " * 5000, "max_new_tokens": 8})
        if kind == "big_json":
            return self._ask(self.ecg_ids[-1], {"question": "q" * 300_000})
        if kind == "bool_tokens":
            return self._ask(self.ecg_ids[-1], {"question": "rate?", "max_new_tokens": True})
        if kind == "unknown_ecg":
            return self._ask("0" * 32, {"question": "rate?"})
        if kind in ("health", "metrics"):
            return self.http.get("/v1/health" if kind == "health" else "/metrics").status_code
        if kind == "malformed":
            bad_name, bad_data = self.bad[i % len(self.bad)]
            return self.http.post("/v1/interpret", files={"file": (bad_name, bad_data)}).status_code
        if kind == "foreign_host":
            return self.http.get("/v1/health", headers={"Host": "rebind.example"}).status_code
        if kind == "cross_origin":
            return self.http.post("/v1/measure", files={"file": (name, data)},
                                  headers={"Origin": "http://evil.example"}).status_code
        if kind == "wrong_token":
            return httpx.get(f"{self.base}/v1/health", headers=_auth(token="guess")).status_code
        if kind == "lower_bearer":
            return httpx.get(f"{self.base}/v1/health", headers=_auth("bearer")).status_code
        if kind == "chunked_flood":
            return self._flood()
        if kind == "slow_body":
            return _raw(self.port, f"POST /v1/measure HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                                   f"Authorization: Bearer {TOKEN}\r\nContent-Length: 10000\r\n"
                                   "Content-Type: multipart/form-data; boundary=XX", b"--XX\r\n", lambda s: time.sleep(0.5))
        raise ValueError(kind)

    def _ask(self, ecg_id: str, body: dict) -> int:
        return self.http.post(f"/v1/ecgs/{ecg_id}/ask", json=body).status_code

    def _flood(self) -> int:
        chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
        head = (f"POST /v1/measure HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: multipart/form-data; boundary=XX\r\nTransfer-Encoding: chunked")
        first = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="f.dcm"\r\n\r\n'
        return _raw(self.port, head, b"%x\r\n%s\r\n" % (len(first), first), lambda s: s.sendall(chunk))

    def close(self) -> None:
        self.http.close()


def soak(bundle: Path, requests: int = 300, clients: int = 4, seconds: float = 120, threads: int = 2, seed: int = 0,
         log=print) -> SoakResult:
    ecgs = [(p.name, p.read_bytes()) for p in real_ecgs()]
    plan = random.Random(seed)
    names = [k for k in KINDS if KINDS[k][0]]
    kinds = plan.choices(names, [KINDS[k][0] for k in names], k=requests)
    proc, port = _start(bundle, threads)
    rss_start = rss_mb(proc.pid)
    lock = threading.Lock()
    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    cursor = [0]
    t0 = time.monotonic()

    def record(kind: str, status: int) -> None:
        with lock:
            statuses[str(status)] += 1
            by_kind.setdefault(kind, Counter())[str(status)] += 1
            if sum(statuses.values()) % 50 == 0:
                log(f"[soak] {sum(statuses.values())} answered {dict(statuses)}")

    def run_client() -> None:
        client = Client(port, ecgs, malformed_uploads())
        try:
            while True:
                with lock:
                    if cursor[0] >= requests or time.monotonic() - t0 > seconds:
                        return
                    i, cursor[0] = cursor[0], cursor[0] + 1
                kind = client.kind_for(kinds[i])
                try:
                    status = client.send(kind, i)
                except httpx.TransportError as exc:
                    status = f"transport error {type(exc).__name__}"
                record(kind, status)
                if kind == "long_question" and client.ecg_ids:        # the conversation must still answer
                    record("after_long", client.send("followup", i))
        finally:
            client.close()

    workers = [threading.Thread(target=run_client) for _ in range(clients)]
    [w.start() for w in workers]
    [w.join() for w in workers]
    wall = time.monotonic() - t0
    rss_end = rss_mb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = -9
    unexpected = sorted({f"{kind}: {status}" for kind, counts in by_kind.items() for status in counts
                         if not str(status).isdigit() or int(status) not in KINDS[kind][1]})
    notes = [] if cursor[0] >= requests else [f"stopped at {cursor[0]} requests: --seconds {seconds:g} ran out"]
    return SoakResult(requests=sum(statuses.values()), clients=clients, wall_s=round(wall, 1),
                      statuses=dict(sorted(statuses.items())),
                      by_kind={k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
                      unexpected=unexpected, server_exit_code=code, rss_mb_start=round(rss_start, 1),
                      rss_mb_end=round(rss_end, 1), cpu=f"{cpu_info()['model']} ({cpu_info()['logical_cores']} "
                                                        "logical cores)", bundle=str(bundle), notes=notes)


def markdown(result: SoakResult, command: str) -> str:
    rows = "\n".join(f"| {kind} | {', '.join(f'{s}: {n}' for s, n in counts.items())} | "
                     f"{', '.join(map(str, sorted(KINDS[kind][1])))} |" for kind, counts in result.by_kind.items())
    verdict = "every kind got the status it must, no 5xx" if result.ok else f"FAILED: {result.unexpected}"
    return (f"# gem-bench soak: `gem-run serve` under ordinary and hostile clients\n\n"
            f"`{command}`\n\nCPU: {result.cpu}. Bundle: `{result.bundle}`. {result.requests} answers from "
            f"{result.clients} clients in {result.wall_s} s; server RSS {result.rss_mb_start} MB at the start, "
            f"{result.rss_mb_end} MB at the end; exit code after SIGTERM: {result.server_exit_code}.\n\n"
            f"Statuses: {', '.join(f'{s}: {n}' for s, n in result.statuses.items())}. Verdict: {verdict}.\n\n"
            f"| kind | statuses | must be |\n|---|---|---|\n{rows}\n\n"
            + "".join(f"- {n}\n" for n in result.notes)
            + "\nThe kinds are in `benchmarks/soak.py` (issue 26). `after_long` is the follow-up sent right after "
              "a too-long question on the same ECG: the conversation must still answer.\n")


def write(result: SoakResult, md: Path, command: str) -> None:
    md.write_text(markdown(result, command))
    md.with_suffix(".json").write_text(json.dumps(asdict(result), indent=1) + "\n")
