"""The local engine of `gem-run batch`: one warm `Interpreter` in this process, records one at a time.

A record whose result is already there (store.done) is skipped without loading anything; the model is
loaded for the first record that needs it. A file read_ecg refuses (EcgReadError) goes to errors.jsonl and
the run goes on; any other exception is a bug and propagates with its traceback (errors.jsonl is still
rewritten first). SIGTERM or SIGINT (Ctrl-C) sets a flag: the record in hand is finished and written, the
run stops there and says it was interrupted (`BatchSummary.interrupted`; gem-run batch exits 130). A
second signal stops at once (KeyboardInterrupt), the record in hand unwritten.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..audit import AuditLog, cli_caller, files_sha256, interpretation_entry
from ..errors import BundleError, EcgReadError, GemEdgeError, one_line
from ..tuning import LoadPlan
from .store import ResultStore, check_writable, folder_error
from .walk import Record, Walk

if TYPE_CHECKING:
    from ..interpreter import Interpreter

# on_record(rel, outcome, reason): after each file; outcome is "done", "skipped" or "refused" (with its reason)
OnRecord = Callable[[str, str, "str | None"], None]


@dataclass(frozen=True)
class LocalOptions:
    bundle: Path | None = None        # None: the demo bundle
    quant: str | None = None          # None: the bundle's default
    threads: int | None = None        # None: all cores, at most 8
    max_new_tokens: int = 256
    save_images: bool = False         # OUT_DIR/<rel>.png (and its median beats) beside each result
    max_bytes: int = 200 * 2**20      # read_ecg's limit per record
    decode_batch: int = 1             # records decoded together as sequences of one llama.cpp context
    audit_log: Path | None = None     # one hash-chained line per record interpreted (gem_runtime.audit)
    revise_rhythm: bool = False       # revise a contradicted rhythm statement (gem_runtime.revise)


@dataclass(frozen=True)
class BatchSummary:
    done: int                         # interpreted and written by this run
    skipped: int                      # results already there for the same input and settings
    refused: int                      # listed in errors.jsonl
    seconds: float                    # wall time of the run, model load included
    hidden: int = 0                   # hidden files and folders, not walked
    interrupted: str | None = None    # the signal's name ("SIGTERM") when one stopped the run

    @property
    def records_per_hour(self) -> float:
        """Records interpreted per hour of this run (skips excluded: they cost nothing)."""
        return self.done * 3600 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"done": self.done, "skipped": self.skipped, "refused": self.refused, "hidden": self.hidden,
                "seconds": round(self.seconds, 2), "records_per_hour": round(self.records_per_hour, 1),
                "interrupted": self.interrupted}


def resolve_plan(options: LocalOptions, settings: dict | None = None) -> LoadPlan:
    """The batch's load plan: gem-run tune's choices here, as gem-run takes them, with flash attention off.
    `settings` (a store's) pins the LLM type and encoders, so that every Ray worker loads what the driver chose."""
    return LoadPlan.resolve(options.bundle, quant=settings["quant"] if settings else options.quant,
                            threads=options.threads, n_seq=options.decode_batch, flash_attn=False,
                            encoder_precision=settings["encoders"] if settings else "auto")


def open_store(out_dir: Path, options: LocalOptions) -> tuple[ResultStore, LoadPlan]:
    """The bundle checked (its LLM type too), the load plan, and the writer for out_dir keyed on this run's
    settings: the same for every engine."""
    check_writable(out_dir)                             # before anything is loaded or read
    plan = resolve_plan(options)
    bundle = plan.bundle
    if plan.quant not in bundle.manifest.llm:
        raise BundleError(bundle.root, f"no {plan.quant} LLM in this bundle (has {', '.join(bundle.llm_quants())})")
    store = ResultStore(out_dir, {"bundle_id": bundle.bundle_id, "quant": plan.quant,
                                  "encoders": dict(plan.encoder_precision),
                                  "max_new_tokens": options.max_new_tokens, "flash_attn": False,
                                  # only when on: results written before the option existed keep their key
                                  **({"revise_rhythm": True} if options.revise_rhythm else {})},
                        options.save_images)
    return store, plan


def record_key(store: ResultStore, record: Record, max_bytes: int | None = None) -> tuple[dict | None, str | None]:
    """(the record's "batch" key, None), or (None, why its files are not read): over `max_bytes` together
    (checked before they are hashed: a 2 GiB file is refused by its size, not read), or unreadable."""
    try:
        size = sum(os.stat(f).st_size for f in record.files)
        if max_bytes is not None and size > max_bytes:
            return None, f"{size} bytes, over the {max_bytes} byte limit (--max-bytes); not read"
        return store.key(record), None
    except OSError as exc:
        return None, f"could not read: {type(exc).__name__}: {one_line(exc)}"


def run_local(walk: Walk, out_dir: Path, options: LocalOptions,
              on_record: OnRecord = lambda rel, outcome, reason: None) -> BatchSummary:
    """Interpret every record of `walk` not yet done into out_dir (see store.py for what is written)."""
    t0 = time.perf_counter()
    store, plan = open_store(out_dir, options)
    counts = {"done": 0, "skipped": 0, "refused": 0}
    engine = RecordRunner(options, store, plan)
    with SignalStop() as stop, ExitStack() as stack:
        stack.callback(engine.close)
        walked = {r.rel for r in walk.records} | {rel for rel, _ in walk.refused}
        try:
            for rel, reason in walk.refused:
                store.refuse(rel, reason)
                counts["refused"] += 1
                on_record(rel, "refused", reason)
            n = options.decode_batch
            for group in (walk.records[i:i + n] for i in range(0, len(walk.records), n)):
                if stop.signal_name:
                    break
                for record, (outcome, reason) in zip(group, engine.run(group)):
                    counts[outcome] += 1
                    on_record(record.rel, outcome, reason)
        except BaseException:
            with contextlib.suppress(GemEdgeError):       # the first failure is the one to report
                store.finish(walked)
            raise
        store.finish(walked)
    return BatchSummary(**counts, seconds=time.perf_counter() - t0, hidden=walk.hidden,
                        interrupted=stop.signal_name)


class RecordRunner:
    """Records -> outcomes with one Interpreter, loaded on the first record that needs it (or by `load`), closed
    by close(); the local engine and each Ray worker run one. Flash attention is off: a result is then the same
    whatever the threads, the Ray workers or --decode-batch (with it on, llama.cpp splits a one-token decode's
    attention across threads and the text can change with their number). `plan`: None resolves one from the
    store's settings (a Ray worker)."""

    def __init__(self, options: LocalOptions, store: ResultStore, plan: LoadPlan | None = None):
        self.options, self.store, self.plan, self.gem = options, store, plan, None
        self.audit = None if options.audit_log is None else AuditLog(options.audit_log)

    def run(self, records: list[Record]) -> list[tuple[str, str | None]]:
        """Each record's (outcome, reason): "skipped" (done before), "refused" (listed), or "done" (written);
        the ones to interpret are decoded together when there are several."""
        from ..readers import read_ecg
        from ..timings import Timings

        outcomes: list = [None] * len(records)
        todo = []                                     # (index, record, key, ecg, timings, image path)
        for i, record in enumerate(records):
            key, unreadable = record_key(self.store, record, self.options.max_bytes)
            if unreadable:
                outcomes[i] = self._refuse(record, unreadable)
                continue
            if self.store.done(record, key):
                outcomes[i] = ("skipped", None)
                continue
            timings = Timings()
            try:
                with timings.request(), timings.stage("read"):
                    ecg = read_ecg(record.path, max_bytes=self.options.max_bytes)
            except EcgReadError as exc:               # the file, not us: listed, and the run goes on
                outcomes[i] = self._refuse(record, one_line(exc.problem))
                continue
            image = self.store.image_path(record.rel) if self.options.save_images else None
            if image is not None:
                try:
                    image.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise folder_error(image.parent, exc, "make the image's folder") from None
            todo.append((i, record, key, ecg, timings, image))
        if todo:
            gem = self.load()
            o = self.options
            if len(todo) == 1:
                _, _, _, ecg, timings, image = todo[0]
                results = [_refusal(lambda: gem.interpret(ecg, max_new_tokens=o.max_new_tokens, save_image=image,
                                                          timings=timings, revise=o.revise_rhythm))]
            else:
                results = gem.interpret_many([t[3] for t in todo], max_new_tokens=o.max_new_tokens,
                                             save_images=[t[5] for t in todo], timings=[t[4] for t in todo],
                                             revise=o.revise_rhythm)
            for (i, record, key, *_), result in zip(todo, results):
                if isinstance(result, EcgReadError):
                    outcomes[i] = self._refuse(record, one_line(result.problem))
                else:
                    self.store.write(record, {**result.to_dict(), "load_ms": round(gem.load_ms, 1)}, key)
                    outcomes[i] = ("done", None)
                self._audit(record, gem, result)
        return outcomes

    def _audit(self, record: Record, gem, result) -> None:
        """The record's audit line. Its input hash is the trail's own (a lone file's sha256, as gem-run, the service
        and the listener write it), not the batch key's, which also covers file names."""
        if self.audit is not None:
            error = result if isinstance(result, EcgReadError) else None
            self.audit.append(interpretation_entry(
                "batch", cli_caller(), files_sha256(list(record.files)), gem, None if error else result, error,
                {"max_new_tokens": self.options.max_new_tokens, "decode_batch": self.options.decode_batch,
                 "revise_rhythm": self.options.revise_rhythm}))

    def _refuse(self, record: Record, reason: str) -> tuple[str, str]:
        self.store.refuse(record.rel, reason)
        return "refused", reason

    def load(self) -> "Interpreter":
        """The warm Interpreter, loaded now if it is not yet."""
        if self.gem is None:
            from ..interpreter import Interpreter

            self.gem = Interpreter(self.plan or resolve_plan(self.options, self.store.settings))
        return self.gem

    def close(self) -> None:
        if self.gem is not None:
            self.gem.close()
            self.gem = None
        if self.audit is not None:
            self.audit.close()
            self.audit = None


def _refusal(interpret):
    """interpret()'s Result, or the EcgReadError it raised (a record the reader took but the model cannot)."""
    try:
        return interpret()
    except EcgReadError as exc:
        return exc


class SignalStop:
    """SIGTERM / SIGINT: note it, let the record in hand finish; a second one stops at once. Handlers are
    set only in the main thread (Python allows no other) and put back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is threading.main_thread():
            self.install()
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def install(self) -> None:
        """Put the handlers (again: after a library such as Ray has put its own), keeping the first ones seen to
        restore on exit. Main thread only."""
        for s in self.SIGNALS:
            previous = signal.signal(s, self.handle)
            self._previous.setdefault(s, previous)

    def handle(self, signum, frame) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        sys.stderr.write(f"\ngem-run batch: {self.signal_name}: finishing the record in hand, then stopping "
                         "(again to stop now)\n")
