"""The Ray engine of `gem-run batch` (the scale extra): the records over a pool of warm Interpreters.

    run_ray(walk, out_dir, LocalOptions(...), RayOptions(workers=4, address=None), on_record)

The driver hashes every record, skips those done (store.done) and reads again those an earlier run refused,
so a rerun with nothing new never starts Ray. The rest become a Ray Data dataset (rel, path, files; one block
per record up to MAX_BLOCKS) mapped by `map_batches` over an actor pool: each actor loads one `Interpreter` in
its `__init__` and runs the local engine's per-record code (the same atomic writer), returning (rel, outcome,
reason) rows; the driver writes errors.jsonl. On a cluster every node must see the same paths.

Pool: with GPUs, one actor per GPU (`num_gpus`); without, `--workers` actors of `--threads` cores each
(`num_cpus`), the one not given derived from the cluster's CPUs.

A worker that dies (killed, out of memory, its node lost) is restarted (`max_restarts=-1`) and its batch
retried (`max_task_retries=MAX_TASK_RETRIES`): the retry skips a record already written, and one written
twice is one file (an atomic replace of the same path). A record that kills its worker every time is a bug:
the run stops with Ray's error, as the local engine's would. SIGTERM / Ctrl-C stops submitting; the records in
flight are abandoned (a result is whole or absent; a killed worker's temporary files are removed).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import EcgReadError, GemEdgeError, one_line
from .local import BatchSummary, LocalOptions, OnRecord, RecordRunner, SignalStop, open_store, record_key
from .store import ResultStore
from .walk import Record, Walk

INSTALL = "gem-run batch --engine ray needs the scale extra: pip install 'gem-edge[scale]'"
MAX_TASK_RETRIES = 3          # tries of one batch on a restarted worker after the first
MAX_BLOCKS = 4096             # one record per block (per task) up to this many; grouped beyond
MAX_THREADS = 8               # cores per worker when --threads is not given


@dataclass(frozen=True)
class RayOptions:
    workers: int | None = None        # actors; None: one per GPU, else the cluster's CPUs / threads
    address: str | None = None        # a running cluster, "HOST:PORT" or "auto"; None: a new local Ray (not
                                      # RAY_ADDRESS, nor what `ray start` runs on this machine)


def require_ray():
    """The ray module with Ray Data, or the one-line error saying which extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise GemEdgeError(INSTALL) from None
    return ray


def check_address(address: str | None) -> None:
    """Fail fast where nothing listens at --address (ray.init would wait for it forever)."""
    if address is None or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise GemEdgeError(f"--address {address}: expected HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise GemEdgeError(f"--address {address}: cannot reach a Ray cluster there ({exc.strerror or exc})") from None


def plan(cpus: float, gpus: float, workers: int | None, threads: int | None) -> tuple[int, int, float]:
    """(workers, threads per worker, GPUs per worker) for a cluster with `cpus` and `gpus`; raises when the
    pool asked for cannot be placed."""
    if gpus >= 1:
        workers = workers or int(gpus)
        threads = threads or max(1, min(MAX_THREADS, int(cpus) // workers))
        num_gpus = min(1.0, gpus / workers)
    else:
        threads = threads or max(1, min(MAX_THREADS, int(cpus) // (workers or max(1, int(cpus) // 4))))
        workers = workers or max(1, int(cpus) // threads)
        num_gpus = 0.0
    if workers * threads > cpus:
        raise GemEdgeError(f"--workers {workers} x --threads {threads} = {workers * threads} cores, "
                           f"but the Ray cluster has {cpus:g}: give fewer workers or threads")
    return workers, threads, num_gpus


def run_ray(walk: Walk, out_dir: Path, options: LocalOptions, ray_options: RayOptions,
            on_record: OnRecord = lambda rel, outcome, reason: None) -> BatchSummary:
    """Interpret every record of `walk` not yet done into out_dir on a Ray actor pool (see the docstring)."""
    ray = require_ray()
    check_address(ray_options.address)
    t0 = time.perf_counter()
    store, _ = open_store(out_dir, options)
    counts = {"done": 0, "skipped": 0, "refused": 0}

    def count(rel: str, outcome: str, reason: str | None) -> None:
        if outcome == "refused":
            store.refuse(rel, reason)                     # errors.jsonl is the driver's
        counts[outcome] += 1
        on_record(rel, outcome, reason)

    with SignalStop() as stop:
        todo: list[tuple[Record, dict]] = []                  # (record, its "batch" key)
        try:
            for rel, reason in walk.refused:
                count(rel, "refused", reason)
            for record in walk.records:
                if stop.signal_name:
                    break
                key, unreadable = record_key(store, record, options.max_bytes)
                if unreadable:
                    count(record.rel, "refused", unreadable)
                elif store.done(record, key):
                    count(record.rel, "skipped", None)
                elif record.rel in store.earlier and (reason := _still_refused(record, options)):
                    count(record.rel, "refused", reason)  # read here: a rerun of refusals starts no Ray
                else:
                    todo.append((record, key))
            if todo and not stop.signal_name:
                with contextlib.redirect_stdout(sys.stderr):      # Ray prints its workers' deaths to stdout
                    finished = _run_pool(ray, [r for r, _ in todo], out_dir,
                                         replace(options, quant=store.settings["quant"]), store, ray_options,
                                         stop, count)
                for record, key in todo:              # stopped: written by a worker, its row not yet back
                    if record.rel not in finished and store.done(record, key):
                        finished.add(record.rel)
                        count(record.rel, "done", None)
                store.reached.difference_update(r.rel for r, _ in todo if r.rel not in finished)
        except BaseException:
            with contextlib.suppress(GemEdgeError):       # the first failure is the one to report
                store.finish({r.rel for r in walk.records} | {rel for rel, _ in walk.refused})
            raise
        store.finish({r.rel for r in walk.records} | {rel for rel, _ in walk.refused})
    return BatchSummary(**counts, seconds=time.perf_counter() - t0, hidden=walk.hidden,
                        interrupted=stop.signal_name)


def _still_refused(record: Record, options: LocalOptions) -> str | None:
    """The reason read_ecg still refuses a file an earlier run refused (None: it reads now)."""
    from ..readers import read_ecg

    try:
        read_ecg(record.path, max_bytes=options.max_bytes)
    except EcgReadError as exc:
        return one_line(exc.problem)
    return None


def _run_pool(ray, todo: list[Record], out_dir: Path, options: LocalOptions, store: ResultStore,
              ray_options: RayOptions, stop: SignalStop, count: OnRecord) -> set[str]:
    """Start or join Ray, map `todo` over the actor pool, count each row; the rels that came back."""
    import ray.data
    from tqdm import tqdm

    logging.getLogger("ray.data").setLevel(logging.ERROR)     # our bar and plan line say what it would
    local = {} if ray_options.address else {"include_dashboard": False}
    try:
        ray.init(address=ray_options.address or "local", log_to_driver=False, logging_level=logging.ERROR,
                 **local)                              # "local": a new Ray, whatever `ray start` ran here
    except (ConnectionError, RuntimeError) as exc:     # no cluster there, another Ray version, ...
        if not ray_options.address:
            raise
        raise GemEdgeError(f"--address {ray_options.address}: cannot join the Ray cluster: {one_line(exc)}") \
            from None
    if threading.current_thread() is threading.main_thread():
        stop.install()                               # ray.init put its own (it dies on SIGTERM): ours again
    finished: set[str] = set()
    rows, ours = None, set()
    try:
        res = ray.cluster_resources()
        workers, threads, num_gpus = plan(res.get("CPU", 0.0), res.get("GPU", 0.0), ray_options.workers,
                                          options.threads)
        where = f"cluster {ray_options.address}" if ray_options.address else "local cluster"
        tqdm.write(f"gem-run batch: ray: {workers} worker(s) x {threads} thread(s)"
                   f"{f' x {num_gpus:g} GPU' if num_gpus else ''} on the {where} ({res.get('CPU', 0):g} CPUs, "
                   f"{res.get('GPU', 0):g} GPUs), {len(todo)} records", file=sys.stderr)  # above a progress bar
        ray.data.DataContext.get_current().enable_progress_bars = False
        items = [{"rel": r.rel, "path": str(r.path), "files": [str(f) for f in r.files]} for r in todo]
        with warnings.catch_warnings():       # Ray 2.60 deprecates the remote args that carry the retries
            warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
            ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
                RayWorker, fn_constructor_kwargs={"options": replace(options, threads=threads),
                                                  "out_dir": str(out_dir), "settings": store.settings},
                batch_size=options.decode_batch, compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads, num_gpus=num_gpus or None, max_restarts=-1, max_task_retries=MAX_TASK_RETRIES)
        ours = set(threading.enumerate())
        rows = iter(() if stop.signal_name else ds.iter_rows())
        for row in rows:
            rel, outcome, reason = str(row["rel"]), str(row["outcome"]), str(row["reason"]) or None
            if rel in finished:
                continue
            finished.add(rel)
            count(rel, "refused" if outcome == "refused" else "done", reason)
            if stop.signal_name:
                break
        else:
            rows = None                                # all came back: Ray Data's threads have ended
    finally:
        if rows is not None and hasattr(rows, "close"):
            rows.close()                               # stopped early: Ray Data's threads are told to stop
            _wait_for_threads(ours)
        ray.shutdown()                                 # a local cluster stops; a joined one loses our actors
        _remove_orphans(out_dir, [r.rel for r in todo])
    return finished


def _wait_for_threads(ours: set, seconds: float = 5.0) -> None:
    """Give the threads Ray Data started while we iterated (its executor, its prefetchers) time to end: one
    that calls into Ray after ray.shutdown() makes Ray end the process with exit code 1."""
    deadline = time.monotonic() + seconds
    for thread in set(threading.enumerate()) - ours:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


class RayWorker:
    """One actor of the pool: a warm Interpreter (loaded here, once) behind the local engine's per-record
    code. Each call maps a batch of (rel, path, files) rows to (rel, outcome, reason) rows; a record already
    written with the same key (a retried batch) comes back "skipped", which the driver counts as done."""

    def __init__(self, options: LocalOptions, out_dir: str, settings: dict):
        self.engine = RecordRunner(options, ResultStore(Path(out_dir), settings, options.save_images))
        self.engine.load()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        done = self.engine.run([Record(str(rel), Path(str(path)), tuple(Path(str(f)) for f in files))
                                for rel, path, files in zip(batch["rel"], batch["path"], batch["files"])])
        return {"rel": np.asarray(batch["rel"], dtype=object),
                "outcome": np.array([outcome for outcome, _ in done], dtype=object),
                "reason": np.array([reason or "" for _, reason in done], dtype=object)}

    def __del__(self):
        if hasattr(self, "engine"):
            self.engine.close()


def _remove_orphans(out_dir: Path, rels: list[str]) -> None:
    """Temporary files a killed worker left for these records (.<rel>.json.<pid>.tmp, as gem_runtime.files
    names them), removed once the pool is gone (a retried record was written whole by another worker, or is
    not there)."""
    by_folder: dict[Path, set[str]] = {}
    for rel in rels:
        name = Path(rel).name
        by_folder.setdefault((out_dir / rel).parent, set()).update(
            (f"{name}.json", f"{name}.png", f"{name}-median-beats.png"))
    for folder, names in by_folder.items():
        for entry in os.listdir(folder) if folder.is_dir() else ():
            base, _, pid = entry.removeprefix(".").removesuffix(".tmp").rpartition(".")
            if entry.startswith(".") and entry.endswith(".tmp") and pid.isdigit() and base in names:
                (folder / entry).unlink(missing_ok=True)
