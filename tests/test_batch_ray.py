"""gem-run batch --engine ray (the scale extra), run by the real command in a subprocess with the tiny bundle on
a local Ray: the same results, refusals, summary and exit code as --engine local; a rerun that starts no Ray;
a worker SIGKILLed mid-batch, restarted by Ray, every record written once; SIGTERM on a joined cluster (a
`ray start --head` of 2 CPUs), resumed by the local engine to the same state. Without Ray, one line, exit 2."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from clirun import free_port, run_main, run_without, terminate
from test_batch import DICOM, RUN_DEPENDENT, _archive, _batch, _errors, _snapshot, _stable

from gem_runtime.batch.ray_engine import _remove_orphans, plan
from gem_runtime.cli import main
from gem_runtime.errors import GemEdgeError

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="needs the scale extra: pip install 'gem-edge[scale]'")
RAY = ("--engine", "ray", "--workers", "2")
WORKER = ("ray::", "MapBatches(RayWorker)")    # an actor of our pool, as Ray titles its process (2.40 to 2.60)


def _many(root: Path, n: int = 12) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        shutil.copy(DICOM, root / f"ecg{i:02d}.dcm")
    return root


def _popen(in_dir: Path, out_dir: Path, bundle: Path, *extra: str, env: dict | None = None):
    return subprocess.Popen([sys.executable, "-m", "gem_runtime.cli", "batch", str(in_dir), "--out", str(out_dir),
                             "--bundle", str(bundle), "--max-new-tokens", "8", "--threads", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_a_result(out: Path, proc, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not any(out.rglob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1]


def _stop(proc) -> None:
    """A run the test gave up on: SIGTERM, then a second one (stops at once, Ray shut down), then a kill."""
    for _ in range(2):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
    if proc.poll() is None:
        proc.kill()


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process under pid (Linux /proc)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append((int(d.name), cmd))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _assert_each_once(out: Path, names: list[str], single: dict) -> None:
    """OUT holds exactly these results, each whole, none left half-written, each the text `gem-run --json`
    gives for the same file."""
    assert sorted(f.relative_to(out).as_posix() for f in out.rglob("*.json")) == sorted(f"{n}.json" for n in names)
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]
    for n in names:
        res = _stable(out / f"{n}.json")
        assert len(res.pop("batch")["input_sha256"]) == 64 and res.pop("source").endswith(n)
        assert res == single, n


@pytest.fixture(scope="module")
def single(tiny_bundle) -> dict:
    """What `gem-run --json` gives for the DICOM, less what differs between runs and files."""
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", str(DICOM), "--bundle", str(tiny_bundle), "--json",
                        "--max-new-tokens", "8", "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return {k: v for k, v in json.loads(p.stdout).items() if k not in RUN_DEPENDENT | {"source"}}


@needs_ray
def test_ray_on_a_local_ray_gives_what_the_local_engine_gives(tmp_path, shared_data, ptb, tiny_bundle):
    archive = _archive(tmp_path / "in", shared_data, ptb)
    local, out = tmp_path / "local", tmp_path / "ray"
    p = _batch(archive, local, tiny_bundle)
    r = _batch(archive, out, tiny_bundle, *RAY)
    assert p.returncode == r.returncode == 3, r.stderr
    for text in ("3 done, 0 skipped, 2 refused", "1 hidden file or folder not read"):
        assert text in p.stdout and text in r.stdout
    assert r.stdout.count("\n") == 1, r.stdout                  # Ray's own messages are not on stdout
    assert "gem-run batch: ray: 2 worker(s) x 1 thread(s)" in r.stderr
    files = sorted(f.relative_to(local).as_posix() for f in local.rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file())
    assert (out / "errors.jsonl").read_bytes() == (local / "errors.jsonl").read_bytes()
    for e in _errors(out):
        assert f"refused {e['file']}: {e['error']}" in r.stderr
    for name in files:
        if name.endswith(".json"):
            assert _stable(out / name) == _stable(local / name), name

    before = _snapshot(out)
    again = _batch(archive, out, tiny_bundle, *RAY)             # nothing to do: the driver says so, no Ray
    assert again.returncode == 3 and "0 done, 3 skipped, 2 refused" in again.stdout, again.stderr
    assert "ray:" not in again.stderr and _snapshot(out) == before


@needs_ray
def test_a_worker_killed_mid_batch_is_restarted_and_every_record_ends_once(tmp_path, tiny_bundle, single):
    many, out = _many(tmp_path / "in"), tmp_path / "out"
    proc = _popen(many, out, tiny_bundle, *RAY)
    try:
        _wait_for_a_result(out, proc)
        workers = [pid for pid, cmd in _descendants(proc.pid) if cmd.startswith(WORKER[0]) and WORKER[1] in cmd]
        written = len(list(out.rglob("*.json")))
        assert len(workers) == 2 and written < 12, (workers, written)
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        _stop(proc)
    assert proc.returncode == 0, stderr
    assert "12 done, 0 skipped, 0 refused" in stdout
    _assert_each_once(out, [f"ecg{i:02d}.dcm" for i in range(12)], single)


def _start_head(env: dict, temp: str) -> tuple[subprocess.Popen, int, list[str]]:
    """`ray start --head --block` on fresh free ports: the process, its port and what it printed up to "will now
    block" (all of it when it exited)."""
    port = free_port()
    ports = [f"--{name}={free_port()}" for name in ("dashboard-agent-listen-port",
                                                    "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                                    "metrics-export-port")]
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", *ports],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    printed = []
    for line in head.stdout:                                    # ready once it says it will block
        printed.append(line)
        if "will now block" in line:
            break
    else:                                                       # its output ended: it exited, or will
        head.wait(timeout=60)
    return head, port, printed


@pytest.fixture
def ray_head():
    """A Ray cluster of 2 CPUs started as an operator would (`ray start --head --block`): its address, and the
    environment a driver joining it needs. Stopped (SIGTERM, no drain) at the end. A start that fails is tried
    again on other ports (a free port can be taken between our probe and Ray's bind); the last one's output
    is the failure message."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    temp = tempfile.mkdtemp(prefix="gemray-")        # its own, short (socket paths): /tmp/ray is left alone
    head = None
    try:
        for _ in range(3):
            head, port, printed = _start_head(env, temp)
            if head.poll() is None:
                break
            terminate(head, 60)
        assert head.poll() is None, "ray start --head exited:\n" + "".join(printed[-40:])
        yield f"127.0.0.1:{port}", env
    finally:
        if head is not None:
            terminate(head, 60)
        shutil.rmtree(temp, ignore_errors=True)


@needs_ray
def test_sigterm_on_a_joined_cluster_stops_and_the_local_engine_resumes(tmp_path, tiny_bundle, single, ray_head):
    address, env = ray_head
    many, out = _many(tmp_path / "in"), tmp_path / "out"
    proc = _popen(many, out, tiny_bundle, *RAY, "--address", address, env=env)
    try:
        _wait_for_a_result(out, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 130, stderr
    assert f"on the cluster {address}" in stderr and "SIGTERM: finishing" in stderr
    n = len(list(out.rglob("*.json")))
    assert 1 <= n and f"interrupted by SIGTERM: {n} done, 0 skipped" in stdout, stdout   # 12: all done in flight
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]

    resumed = _batch(many, out, tiny_bundle)                    # the engines share OUT_DIR's format
    assert resumed.returncode == 0 and f"{12 - n} done, {n} skipped" in resumed.stdout, resumed.stderr
    _assert_each_once(out, [f"ecg{i:02d}.dcm" for i in range(12)], single)


def test_without_the_scale_extra_ray_is_one_line(tmp_path):
    p = run_without("ray", ["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "ray"])
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "needs the scale extra: pip install 'gem-edge[scale]'" in p.stderr
    assert not (tmp_path / "o").exists()


def test_workers_and_address_belong_to_ray_and_an_unreachable_cluster_is_one_line(tmp_path, tiny_bundle, capsys):
    for flag, value in (("--workers", "4"), ("--address", "10.0.0.1:6379")):
        code, _, err = run_main(main, ["batch", str(tmp_path), "--out", str(tmp_path / "o"), flag, value], capsys)
        assert code == 2 and err.count("\n") == 1 and f"{flag} applies to --engine ray only" in err, err
    if importlib.util.find_spec("ray") is not None:
        (tmp_path / "in").mkdir()
        address = f"127.0.0.1:{free_port()}"                    # nothing listens: ray.init would wait forever
        code, _, err = run_main(main, ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--bundle",
                                       str(tiny_bundle), "--engine", "ray", "--address", address], capsys)
        assert code == 2 and f"--address {address}: cannot reach a Ray cluster there" in err, err


def test_the_pool_is_planned_from_the_cluster():
    assert plan(cpus=2, gpus=0, workers=2, threads=1) == (2, 1, 0.0)
    assert plan(cpus=2, gpus=0, workers=None, threads=None) == (1, 2, 0.0)
    assert plan(cpus=16, gpus=0, workers=None, threads=None) == (4, 4, 0.0)
    assert plan(cpus=64, gpus=0, workers=2, threads=None) == (2, 8, 0.0)        # at most 8 threads each
    assert plan(cpus=32, gpus=4, workers=None, threads=None) == (4, 8, 1.0)     # one per GPU
    assert plan(cpus=32, gpus=2, workers=4, threads=2) == (4, 2, 0.5)           # two to a GPU
    with pytest.raises(GemEdgeError, match=r"--workers 3 x --threads 1 = 3 cores, but the Ray cluster has 2"):
        plan(cpus=2, gpus=0, workers=3, threads=1)


def test_a_killed_workers_temporary_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "a").mkdir()
    left = ["a/.x.dcm.json.4242.tmp", "a/.x.dcm.png.17.tmp", "a/.x.dcm-median-beats.png.17.tmp"]   # atomic_write's
    kept = ["a/x.dcm.json", "a/.y.dcm.json.4242.tmp", "a/.x.dcm.json.abc.tmp", "a/notes.tmp", "a/x.dcm.json.1.tmp"]
    for name in left + kept:
        (tmp_path / name).write_text("")
    _remove_orphans(tmp_path, ["a/x.dcm", "gone/z.dcm"])
    assert sorted(f.relative_to(tmp_path).as_posix() for f in tmp_path.rglob("*") if f.is_file()) == sorted(kept)
