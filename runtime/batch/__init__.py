"""`gem-run batch`: interpret every ECG under a folder into a results folder, resumably.

    walk = walk_records(in_dir, out_dir)                      # the records, sorted (walk.py)
    summary = run_local(walk, out_dir, LocalOptions(...))     # one warm Interpreter (local.py)

`walk.py` decides what a record is (a WFDB header with its signal files; every other file), `store.py` how
results and refusals are written (atomically; a rerun skips what is done), `local.py` runs them in this
process (--decode-batch N: N records decoded together in one llama.cpp context, Interpreter.interpret_many),
`ray_engine.py` on a Ray Data actor pool (the scale extra). Flash attention is off in both engines, so a
result does not depend on the threads, the workers or --decode-batch (measured: benchmarks/README.md).
"""
from .local import BatchSummary, LocalOptions, run_local
from .store import ERRORS_FILE, ResultStore, input_sha256
from .walk import Record, Walk, walk_records

__all__ = ["walk_records", "Walk", "Record", "ResultStore", "input_sha256", "ERRORS_FILE", "run_local",
           "LocalOptions", "BatchSummary"]
